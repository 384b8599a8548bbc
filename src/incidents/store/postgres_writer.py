"""Append transactions on PostgreSQL: a row lock on ``log_head`` orders the writers.

New rows go in with binary ``COPY``, the fastest path PostgreSQL offers; the dedupe
check that ``COPY`` cannot do is one indexed join against the batch's keys, made
race-free by the lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from sqlalchemy import Engine

from incidents.log.errors import DedupeRace
from incidents.log.records import (
    EVENT_COLUMNS,
    OUTBOX_COLUMNS,
    ChainHead,
    ExistingKey,
    OutboxEntry,
    StoredEvent,
)
from incidents.store.projection_store import ProjectionStore

_COPY = f"COPY timeline_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = [
    "int8",  # position
    "text",  # incident_id
    "text",  # event_id
    "text",  # source
    "text",  # type
    "text",  # subject
    "int8",  # time_us
    "text",  # origin_id
    "text",  # actor
    "text",  # recorded_by
    "text",  # visibility
    "text",  # correlation_key
    "text",  # fingerprint
    "int8",  # created_us
    "bytea",  # body
    "bytea",  # content_hash
    "bytea",  # prev_hash
    "bytea",  # hash
]
_COPY_OUTBOX = f"COPY outbox ({', '.join(OUTBOX_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_OUTBOX_TYPES = [
    "int8",  # position
    "text",  # aggregate_id
    "text",  # event_type
    "text",  # destination
    "int8",  # created_us
    "int8",  # next_attempt_us
    "int4",  # attempts
]


class PostgresTransaction:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._cur = conn.cursor()
        self.projections = ProjectionStore(lambda: self._cur, "%s", postgresql=True)

    def lock_head(self) -> int:
        self._cur.execute("SELECT position FROM log_head WHERE id = 1 FOR UPDATE")
        row = self._cur.fetchone()
        assert row is not None, "log_head is missing: run incidents admin migrate"
        return int(row[0])

    def existing(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], ExistingKey]:
        if not keys:
            return {}
        # A join against the keys, not "= ANY(array)": on a table whose statistics are
        # stale (a fresh or fast-growing log), the prepared ANY form was planned as a
        # sequential scan, and ingest slowed down as the table grew.
        self._cur.execute(
            "SELECT e.source, coalesce(e.origin_id, e.event_id), e.event_id, e.incident_id, "
            "e.content_hash, e.recorded_by, e.visibility "
            "FROM unnest(%b::text[], %b::text[]) AS k(source, dedupe_id) "
            "JOIN timeline_events e ON e.source = k.source "
            "AND coalesce(e.origin_id, e.event_id) = k.dedupe_id "
            # The archive's keys in the same round trip: an archived event is still a
            # duplicate (the join with an empty archive costs next to nothing).
            "UNION ALL SELECT a.source, a.dedupe_id, a.event_id, a.incident_id, "
            "a.content_hash, a.recorded_by, a.visibility "
            "FROM unnest(%b::text[], %b::text[]) AS k(source, dedupe_id) "
            "JOIN archived_dedupe_keys a ON a.source = k.source AND a.dedupe_id = k.dedupe_id",
            ([k[0] for k in keys], [k[1] for k in keys]) * 2,
        )
        return {
            (row[0], row[1]): ExistingKey(row[2], row[3], bytes(row[4]), row[5], row[6])
            for row in self._cur.fetchall()
        }

    def chain_heads(self, keys: Sequence[str]) -> dict[str, ChainHead]:
        self._cur.execute(
            "SELECT chain_key, last_position, last_hash, event_count FROM chain_heads "
            "WHERE chain_key = ANY(%b::text[])",
            (list(keys),),
        )
        return {row[0]: ChainHead(row[1], bytes(row[2]), row[3]) for row in self._cur.fetchall()}

    def insert_events(self, rows: Sequence[StoredEvent]) -> None:
        with self._cur.copy(_COPY) as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(row)

    def insert_outbox(self, rows: Sequence[OutboxEntry]) -> None:
        with self._cur.copy(_COPY_OUTBOX) as copy:
            copy.set_types(_COPY_OUTBOX_TYPES)
            for row in rows:
                copy.write_row(row)

    def save_chain_heads(self, heads: dict[str, ChainHead]) -> None:
        keys = list(heads)
        self._cur.execute(
            "INSERT INTO chain_heads (chain_key, last_position, last_hash, event_count) "
            "SELECT * FROM unnest(%b::text[], %b::int8[], %b::bytea[], %b::int8[]) "
            "ON CONFLICT (chain_key) DO UPDATE SET last_position = excluded.last_position, "
            "last_hash = excluded.last_hash, event_count = excluded.event_count",
            (
                keys,
                [heads[k].last_position for k in keys],
                [heads[k].last_hash for k in keys],
                [heads[k].event_count for k in keys],
            ),
        )

    def set_head(self, position: int) -> None:
        self._cur.execute("UPDATE log_head SET position = %s WHERE id = 1", (position,))


class PostgresWriter:
    """Runs append transactions on one dedicated connection, reconnecting after failures."""

    # The dedupe lookup runs before the row lock; the unique index catches a race.
    optimistic_dedupe = True

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._raw: Any = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._raw is None:
            self._raw = self._engine.raw_connection()
            # Explicit BEGIN/COMMIT through conn.transaction(), nothing implicit.
            self._raw.driver_connection.autocommit = True
        conn: psycopg.Connection[Any] = self._raw.driver_connection
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        conn = self._connection()
        try:
            with conn.transaction():
                yield PostgresTransaction(conn)
        except psycopg.errors.UniqueViolation as exc:
            raise DedupeRace(str(exc)) from exc
        except psycopg.OperationalError:
            # The connection may be dead; start afresh on the next group.
            self.close()
            raise

    def close(self) -> None:
        if self._raw is not None:
            with contextlib.suppress(Exception):
                self._raw.close()
            self._raw = None
