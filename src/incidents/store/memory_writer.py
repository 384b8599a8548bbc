"""An event writer that keeps the log and the projections in memory.

It satisfies the same protocols as the SQLite and PostgreSQL writers, so the real
appender, projection session and correlation engine run unchanged against it: what
``incidents correlation test`` reports is what the server would decide. Nothing is
written anywhere; a transaction that fails is undone from a journal of the changes
it made.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from incidents.log.records import ChainHead, ExistingKey, OutboxEntry, StoredEvent
from incidents.store.projection_store import PROJECTION_TABLES

# A journal entry: restores one change when a transaction rolls back.
_Undo = Callable[[], None]


class MemoryTables:
    """Projection rows by table and primary key, in the column order of the tables."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {
            name: {} for name in PROJECTION_TABLES
        }
        self._columns = {
            name: [c.name for c in spec.columns] for name, spec in PROJECTION_TABLES.items()
        }
        self._keys = {
            name: [self._columns[name].index(c.name) for c in spec.primary_key.columns]
            for name, spec in PROJECTION_TABLES.items()
        }

    def key_of(self, table: str, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(row[i] for i in self._keys[table])

    def column(self, table: str, name: str) -> int:
        return self._columns[table].index(name)

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of ``table``, sorted by primary key (for comparisons and reports)."""
        return [self.tables[table][k] for k in sorted(self.tables[table])]


class MemoryProjectionRows:
    """The :class:`~incidents.log.session.ProjectionRows` of one memory transaction."""

    def __init__(self, store: MemoryTables, journal: list[_Undo]) -> None:
        self._store = store
        self._journal = journal

    def _put(self, table: str, key: tuple[Any, ...], row: tuple[Any, ...] | None) -> None:
        rows = self._store.tables[table]
        before = rows.get(key)

        def undo() -> None:
            if before is None:
                rows.pop(key, None)
            else:
                rows[key] = before

        self._journal.append(undo)
        if row is None:
            rows.pop(key, None)
        else:
            rows[key] = row

    def load(self, table: str, keys: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        rows = self._store.tables[table]
        return {k: rows[(k,)] for k in keys if (k,) in rows}

    def save(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        for row in rows:
            values = tuple(row)
            self._put(table, self._store.key_of(table, values), values)

    def insert(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        self.save(table, rows)

    def delete(self, table: str, column: str, values: Sequence[str]) -> None:
        index = self._store.column(table, column)
        wanted = set(values)
        doomed = [k for k, row in self._store.tables[table].items() if row[index] in wanted]
        for key in doomed:
            self._put(table, key, None)

    def select(self, table: str, column: str, value: str) -> list[tuple[Any, ...]]:
        index = self._store.column(table, column)
        return [row for row in self._store.tables[table].values() if row[index] == value]

    def truncate(self, tables: Sequence[str]) -> None:
        for table in tables:
            for key in list(self._store.tables[table]):
                self._put(table, key, None)


class MemoryTransaction:
    """One append transaction on a :class:`MemoryWriter` (which holds its lock)."""

    def __init__(self, writer: MemoryWriter) -> None:
        self._writer = writer
        self.journal: list[_Undo] = []
        self.projections = MemoryProjectionRows(writer.projection_tables, self.journal)

    def lock_head(self) -> int:
        return self._writer.head

    def existing(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], ExistingKey]:
        known = self._writer.keys
        return {key: known[key] for key in keys if key in known}

    def chain_heads(self, keys: Sequence[str]) -> dict[str, ChainHead]:
        heads = self._writer.chain_heads
        return {key: heads[key] for key in keys if key in heads}

    def insert_events(self, rows: Sequence[StoredEvent]) -> None:
        writer = self._writer
        length = len(writer.events)
        added: list[tuple[str, str]] = []
        for row in rows:
            key = (row.source, row.origin_id or row.event_id)
            if key in writer.keys:
                # What the unique index of a database would refuse.
                raise ValueError(f"dedupe key {key} is already stored")
            writer.keys[key] = ExistingKey(
                row.event_id, row.incident_id, row.content_hash, row.recorded_by, row.visibility
            )
            added.append(key)
            writer.events.append(row)

        def undo() -> None:
            del writer.events[length:]
            for key in added:
                writer.keys.pop(key, None)

        self.journal.append(undo)

    def insert_outbox(self, rows: Sequence[OutboxEntry]) -> None:
        outbox = self._writer.outbox
        length = len(outbox)

        def undo() -> None:
            del outbox[length:]

        self.journal.append(undo)
        outbox.extend(rows)

    def save_chain_heads(self, heads: dict[str, ChainHead]) -> None:
        stored = self._writer.chain_heads
        before = {key: stored.get(key) for key in heads}

        def undo() -> None:
            for key, head in before.items():
                if head is None:
                    stored.pop(key, None)
                else:
                    stored[key] = head

        self.journal.append(undo)
        stored.update(heads)

    def set_head(self, position: int) -> None:
        writer = self._writer
        before = writer.head

        def undo() -> None:
            writer.head = before

        self.journal.append(undo)
        writer.head = position

    def rollback(self) -> None:
        for undo in reversed(self.journal):
            undo()
        self.journal.clear()


class MemoryWriter:
    """An :class:`~incidents.log.session.EventWriter` whose storage is this object.

    Read the results from :attr:`events` (in position order) and
    :attr:`projection_tables` once the appender has answered.
    """

    # One writer thread and no other process: the lock is taken before any read.
    optimistic_dedupe = False

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.keys: dict[tuple[str, str], ExistingKey] = {}
        self.chain_heads: dict[str, ChainHead] = {}
        self.head = 0
        # What would go to the outbox (nothing delivers it).
        self.outbox: list[OutboxEntry] = []
        self.projection_tables = MemoryTables()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[MemoryTransaction]:
        with self._lock:
            tx = MemoryTransaction(self)
            try:
                yield tx
            except BaseException:
                tx.rollback()
                raise

    def events_up_to(self, position: int) -> Iterator[StoredEvent]:
        """Stored events up to ``position``, in position order (for a rebuild)."""
        for row in self.events:
            if row.position > position:
                break
            yield row

    def close(self) -> None:
        """Nothing to release: the data lives as long as this object."""
