"""Engines for the two backends, chosen by ``IM_DATABASE_URL``."""

from __future__ import annotations

import sqlite3
from enum import Enum
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import ConnectionPoolEntry


class Backend(Enum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


def backend_of(url: str) -> Backend:
    """Which backend a database URL names."""
    return Backend.SQLITE if url.startswith("sqlite") else Backend.POSTGRESQL


def sqlalchemy_url(url: str) -> str:
    """Map the user-facing URL onto the SQLAlchemy driver URL (psycopg 3 for PostgreSQL)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        return "sqlite+pysqlite://" + url[len("sqlite://") :]
    return url


def make_engine(url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 8) -> Engine:
    """Create the engine for ``url`` with the settings each backend needs."""
    if backend_of(url) is Backend.SQLITE:
        engine = create_engine(
            sqlalchemy_url(url),
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        _configure_sqlite(engine, sqlite_synchronous)
        return engine
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping per checkout: it doubled the round trips of a page query. A connection
        # that died with the server fails one request (503, Retry-After) and SQLAlchemy
        # then discards the whole stale pool.
        pool_pre_ping=False,
    )


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Take transaction control from the sqlite3 module: BEGIN is issued explicitly,
        # so writers can ask for BEGIN IMMEDIATE and readers see consistent snapshots.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Type globs must match case-sensitively on both backends.
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A transaction that reads before it writes must take the write lock first:
        # otherwise a commit by any other connection in between (the appender, the
        # outbox relay) makes its write fail at once with "database is locked".
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


# Execution option for read-then-write transactions (``BEGIN IMMEDIATE`` on SQLite;
# ignored on PostgreSQL): ``writes(engine).begin()``.
WRITE_OPTION = "incidents_write"


def writes(engine: Engine) -> Engine:
    """``engine`` for transactions that read and then write (see :data:`WRITE_OPTION`)."""
    return engine.execution_options(**{WRITE_OPTION: True})
