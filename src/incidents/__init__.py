"""Incidents: incident management on an append-only, tamper-evident CloudEvents timeline."""

__version__ = "0.1.0"
