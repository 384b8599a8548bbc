"""The log's ports: what the append session needs from a storage backend.

Adapters in ``incidents.store`` implement them; nothing here knows SQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from incidents.events.envelope import Event
from incidents.log.query import Cursor, TimelineFilter
from incidents.log.records import ChainHead, ExistingKey, OutboxEntry, StoredEvent


class WriteTransaction(Protocol):
    """The backend operations of one append transaction (the writer holds the log lock)."""

    @property
    def projections(self) -> ProjectionRows:
        """Projection rows, read and written in this same transaction."""
        ...

    def lock_head(self) -> int:
        """Take the log's write lock and return the highest position handed out."""
        ...

    def existing(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], ExistingKey]:
        """Events already stored under any of the (source, dedupe id) keys."""
        ...

    def chain_heads(self, keys: Sequence[str]) -> dict[str, ChainHead]:
        """The current tips of the named chains."""
        ...

    def insert_events(self, rows: Sequence[StoredEvent]) -> None:
        """Store new rows (positions already assigned, in order)."""
        ...

    def insert_outbox(self, rows: Sequence[OutboxEntry]) -> None:
        """Store outbox rows for the events of this transaction."""
        ...

    def save_chain_heads(self, heads: dict[str, ChainHead]) -> None:
        """Record the new tips of the chains the group extended."""
        ...

    def set_head(self, position: int) -> None:
        """Record the highest position handed out; visible to others at commit."""
        ...


class EventWriter(Protocol):
    """A backend that can run append transactions."""

    # Whether the dedupe lookup may run before the lock (needs a unique index that
    # rejects a racing insert, reported as DedupeRace).
    optimistic_dedupe: bool

    def transaction(self) -> contextlib.AbstractContextManager[WriteTransaction]: ...

    def close(self) -> None: ...


class ProjectionRows(Protocol):
    """Key-addressed projection rows (see :class:`incidents.store.projection_store`)."""

    def load(self, table: str, keys: Sequence[str]) -> dict[str, tuple[Any, ...]]: ...

    def save(self, table: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def insert(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        """Store rows whose keys are known to be new (cheaper than ``save``)."""
        ...

    def delete(self, table: str, column: str, values: Sequence[str]) -> None: ...

    def select(self, table: str, column: str, value: str) -> list[tuple[Any, ...]]: ...

    def truncate(self, tables: Sequence[str]) -> None:
        """Empty the named tables (before a rebuild)."""
        ...


class Projection(Protocol):
    """State derived from events, updated in the transaction that stores them."""

    def prepare(self, events: Sequence[Event]) -> None:
        """Load what folding these events will need (before they are appended)."""
        ...

    def fold(self, row: StoredEvent, event: Event | None = None) -> None:
        """Apply a stored event; ``event``, when given, is the row's decoded event
        (spares decoding its body again)."""
        ...

    def flush(self) -> None: ...


# Builds the projection session of one transaction from its projection rows.
ProjectionFactory = Callable[[ProjectionRows], Projection]


class EventLog(Protocol):
    """Reads of the stored log (the timeline and incident services' view of it)."""

    def page(self, filt: TimelineFilter, after: Cursor | None, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` events matching ``filt`` after ``after``, in the filter's order."""
        ...

    def iterate(self, filt: TimelineFilter, chunk: int = 1000) -> Iterator[StoredEvent]:
        """Every event matching ``filt``, read in chunks."""
        ...

    def count(self, filt: TimelineFilter) -> int: ...

    def by_event_id(
        self,
        event_id: str,
        source: str | None = None,
        visibilities: frozenset[str] | None = None,
    ) -> list[StoredEvent]:
        """The events stored under an id (ids are unique per source, not globally)."""
        ...

    def in_position_order(self, up_to: int, chunk: int = 2000) -> Iterator[StoredEvent]:
        """Every event up to a position, in position order."""
        ...

    def after_position(
        self, position: int, filt: TimelineFilter, limit: int, up_to: int | None = None
    ) -> list[StoredEvent]:
        """Events matching ``filt`` committed after ``position`` (and at most ``up_to``),
        in position order (live streams)."""
        ...

    def chain(self, incident_id: str | None, chunk: int = 1000) -> Iterator[StoredEvent]:
        """One incident's chain, in position order."""
        ...

    def chain_head(self, chain_key: str) -> ChainHead | None: ...

    def head_position(self) -> int: ...

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        ...
