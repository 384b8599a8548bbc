"""Append transactions on SQLite: ``BEGIN IMMEDIATE`` is the log's write lock."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Engine

from incidents.log.records import (
    EVENT_COLUMNS,
    OUTBOX_COLUMNS,
    ChainHead,
    ExistingKey,
    OutboxEntry,
    StoredEvent,
)
from incidents.store.projection_store import ProjectionStore

_INSERT = (
    f"INSERT INTO timeline_events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
)
_INSERT_OUTBOX = (
    f"INSERT INTO outbox ({', '.join(OUTBOX_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in OUTBOX_COLUMNS)})"
)

_EXISTING = (
    "SELECT event_id, incident_id, content_hash, recorded_by, visibility "
    "FROM timeline_events WHERE source = ? AND coalesce(origin_id, event_id) = ?"
)
# An archived event is still a duplicate: its key is looked up in the archive's keys too.
_EXISTING_OR_ARCHIVED = (
    f"{_EXISTING} UNION ALL SELECT event_id, incident_id, content_hash, recorded_by, "
    "visibility FROM archived_dedupe_keys WHERE source = ? AND dedupe_id = ? LIMIT 1"
)


class SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.projections = ProjectionStore(conn.cursor, "?")
        # Whether any event is archived (decided on the first dedupe lookup).
        self._archived: bool | None = None

    def lock_head(self) -> int:
        row = self._conn.execute("SELECT position FROM log_head WHERE id = 1").fetchone()
        return int(row[0])

    def existing(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], ExistingKey]:
        found: dict[tuple[str, str], ExistingKey] = {}
        cursor = self._conn.cursor()
        if self._archived is None:
            # Once per transaction (under the write lock, so it holds for all of it):
            # with nothing archived, keys are looked up among live events only.
            self._archived = (
                cursor.execute("SELECT 1 FROM archived_dedupe_keys LIMIT 1").fetchone() is not None
            )
        query = _EXISTING_OR_ARCHIVED if self._archived else _EXISTING
        for source, dedupe_id in keys:
            row = cursor.execute(query, (source, dedupe_id) * (2 if self._archived else 1))
            found_row = row.fetchone()
            if found_row is not None:
                found[(source, dedupe_id)] = ExistingKey(
                    found_row[0], found_row[1], bytes(found_row[2]), found_row[3], found_row[4]
                )
        return found

    def chain_heads(self, keys: Sequence[str]) -> dict[str, ChainHead]:
        heads: dict[str, ChainHead] = {}
        cursor = self._conn.cursor()
        for key in keys:
            row = cursor.execute(
                "SELECT last_position, last_hash, event_count FROM chain_heads WHERE chain_key = ?",
                (key,),
            ).fetchone()
            if row is not None:
                heads[key] = ChainHead(row[0], bytes(row[1]), row[2])
        return heads

    def insert_events(self, rows: Sequence[StoredEvent]) -> None:
        self._conn.executemany(_INSERT, rows)

    def insert_outbox(self, rows: Sequence[OutboxEntry]) -> None:
        self._conn.executemany(_INSERT_OUTBOX, rows)

    def save_chain_heads(self, heads: dict[str, ChainHead]) -> None:
        self._conn.executemany(
            "INSERT INTO chain_heads (chain_key, last_position, last_hash, event_count) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (chain_key) DO UPDATE SET "
            "last_position = excluded.last_position, last_hash = excluded.last_hash, "
            "event_count = excluded.event_count",
            [(key, *head) for key, head in heads.items()],
        )

    def set_head(self, position: int) -> None:
        self._conn.execute("UPDATE log_head SET position = ? WHERE id = 1", (position,))


class SqliteWriter:
    """Runs append transactions on one dedicated connection."""

    # BEGIN IMMEDIATE takes the lock before anything is read: nothing to gain.
    optimistic_dedupe = False

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._raw: Any = None

    def _connection(self) -> sqlite3.Connection:
        if self._raw is None:
            self._raw = self._engine.raw_connection()
        conn: sqlite3.Connection = self._raw.driver_connection
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SqliteTransaction]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield SqliteTransaction(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
