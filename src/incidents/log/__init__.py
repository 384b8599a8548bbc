"""The log: stored events, the append session, the hash chain, queries and ports.

The bottom of the platform: it imports only :mod:`incidents.events`.
"""
