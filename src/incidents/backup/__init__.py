"""Backups of a whole database as a portable archive, and restores that keep every
hash chain verifiable (``incidents admin backup`` / ``restore``).

The archive does not depend on the backend: a SQLite database can be restored into
PostgreSQL and back. See :mod:`incidents.backup.archive` for the format.
"""
