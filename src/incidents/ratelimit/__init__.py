"""Sliding-window rate limits for API tokens and webhook integrations."""
