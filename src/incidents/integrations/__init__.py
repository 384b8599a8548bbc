"""Providers the platform talks to, one folder each; see :mod:`.registry`."""
