"""Artifacts: files attached to incidents, content-addressed, behind a small object-store
port (a local directory by default, S3-compatible storage when configured)."""
