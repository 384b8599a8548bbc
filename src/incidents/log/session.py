"""One append transaction: dedupe, positions, the hash chain, projections, the outbox.

Writers serialise on the log head row (PostgreSQL: ``SELECT ... FOR UPDATE``; SQLite:
``BEGIN IMMEDIATE``) for the length of their transaction. Positions are therefore
handed out in commit order: a reader that has seen position N never later finds a
committed event below N, which is the gap problem of sequence-ordered logs solved at
its root. The cost, one writer at a time, is paid back by group commit
(:mod:`incidents.timeline.group_commit`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from incidents.events.envelope import Event
from incidents.events.timeformat import now_micros
from incidents.log.chain import GENESIS, chain_key, link_hash, row_digest
from incidents.log.ports import Projection, WriteTransaction
from incidents.log.records import ChainHead, ExistingKey, OutboxEntry, OutboxRoute, StoredEvent


class Outcome(Enum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What became of one event of an append request."""

    outcome: Outcome
    event_id: str
    incident_id: str | None
    position: int | None = None
    dedupe_key: str = ""
    # For duplicates and conflicts: who recorded the stored event, and its visibility.
    stored_by: str | None = None
    stored_visibility: str | None = None


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event waiting to be appended, with who is recording it."""

    event: Event
    recorded_by: str


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """An event turned into its row, all but the parts only the log lock can give."""

    item: PendingEvent
    # The columns from incident_id to content_hash (EVENT_COLUMNS[1:16]).
    tail: tuple[Any, ...]
    digest: bytes


def outbox_entries(
    rows: Sequence[StoredEvent], routes: Sequence[OutboxRoute], now_us: int
) -> list[OutboxEntry]:
    """One outbox row per stored event and destination that takes it, due at once."""
    return [
        OutboxEntry(row.position, row.incident_id, row.type, route.destination, now_us, now_us)
        for row in rows
        for route in routes
        if route.wants(row.type, row.incident_id)
    ]


def prepare(pending: Sequence[PendingEvent], now_us: int) -> list[PreparedEvent]:
    """Build rows and digests before taking the lock, so the lock is held briefly."""
    return [_prepare_one(item, now_us) for item in pending]


def _prepare_one(item: PendingEvent, now_us: int) -> PreparedEvent:
    event = item.event
    tail = (
        event.incident_id,
        event.id,
        event.source,
        event.type,
        event.subject,
        event.time_us if event.time_us is not None else now_us,
        event.origin_id,
        # The recorder is who called; the actor is who the event says acted.
        event.actor if event.actor is not None else item.recorded_by,
        item.recorded_by,
        event.visibility,
        event.correlation_key,
        event.fingerprint,
        now_us,
        event.body_json,
        event.content_hash,
    )
    return PreparedEvent(item, tail, row_digest(tail))


def _dedupe_keys(
    prepared: Sequence[PreparedEvent], extra_keys: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    own = {(p.item.event.source, p.item.event.dedupe_id) for p in prepared}
    return list(own.union(extra_keys))


class AppendSession:
    """One append transaction under way: positions, dedupe, chains and projections.

    Events are appended one by one (rows go to the database together at
    :meth:`finish`); each is folded into the projections at once, so a command run
    later in the same transaction decides on state that includes it.
    """

    def __init__(
        self,
        tx: WriteTransaction,
        now_us: int,
        projection: Projection | None = None,
        destinations: Sequence[OutboxRoute] = (),
    ) -> None:
        self.tx = tx
        self.now_us = now_us
        self.projection = projection
        # Outbox destinations: each created event is queued, in this transaction, for
        # each destination that takes it.
        self.destinations = tuple(destinations)
        self._head = 0
        self._known: dict[tuple[str, str], ExistingKey] = {}
        # Every key looked up so far, found or not: a miss is not asked again.
        self._checked: set[tuple[str, str]] = set()
        self._heads: dict[str, ChainHead] = {}
        # Chains whose tip was looked up, found or not.
        self._chains_checked: set[str] = set()
        self._changed: dict[str, ChainHead] = {}
        self._rows: list[StoredEvent] = []
        # perf_counter() readings around taking the log lock (see GroupStats).
        self.lock_asked = 0.0
        self.locked_at = 0.0

    def begin(
        self,
        prepared: Sequence[PreparedEvent],
        *,
        optimistic: bool = False,
        extra_keys: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Take the log lock, loading what ``prepared`` needs in as few queries as possible.

        ``extra_keys`` are further dedupe keys to look up with those of ``prepared`` (the
        commands of the group name theirs). With ``optimistic`` the dedupe lookup runs
        before the log lock is taken, which keeps it out of the serialised section; a
        key stored by another writer in between then surfaces as a unique violation
        (:class:`DedupeRace`).
        """
        keys = _dedupe_keys(prepared, extra_keys)
        if optimistic:
            self._known = self.tx.existing(keys)
            self._lock_head()
        else:
            self._lock_head()
            self._known = self.tx.existing(keys)
        self._checked.update(keys)
        self._load(prepared)

    def admit(
        self, prepared: Sequence[PreparedEvent], extra_keys: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Load what further events and commands need, with the lock already held (for
        requests that arrived while it was awaited, and join the transaction)."""
        self.prefetch_keys(_dedupe_keys(prepared, extra_keys))
        self._load(prepared)

    def _load(self, prepared: Sequence[PreparedEvent]) -> None:
        if not prepared:
            return
        self.prefetch_chains(p.item.event.incident_id for p in prepared)
        if self.projection is not None:
            self.projection.prepare([p.item.event for p in prepared])

    def _lock_head(self) -> None:
        self.lock_asked = time.perf_counter()
        self._head = self.tx.lock_head()
        self.locked_at = time.perf_counter()

    @property
    def created(self) -> int:
        """How many events this transaction has appended so far."""
        return len(self._rows)

    @property
    def head_position(self) -> int:
        """The highest position handed out so far (including this transaction's)."""
        return self._head

    def prefetch_keys(self, keys: Sequence[tuple[str, str]]) -> None:
        """Look up several dedupe keys in one query (a command about to emit many)."""
        missing = [key for key in dict.fromkeys(keys) if key not in self._checked]
        if missing:
            self._known.update(self.tx.existing(missing))
            self._checked.update(missing)

    def prefetch_chains(self, incident_ids: Iterable[str | None]) -> None:
        """Load the chain tips of several incidents in one query (a command about to
        append to many)."""
        keys = [k for k in {chain_key(i) for i in incident_ids} if k not in self._chains_checked]
        if keys:
            self._heads.update(self.tx.chain_heads(keys))
            self._chains_checked.update(keys)

    def lookup(self, source: str, dedupe_id: str) -> ExistingKey | None:
        """The event stored (or appended earlier in this transaction) under a key."""
        key = (source, dedupe_id)
        if key not in self._checked:
            self.prefetch_keys([key])
        return self._known.get(key)

    def append(self, prep: PreparedEvent) -> AppendResult:
        """Append one event (or find its key taken); returns what became of it."""
        event = prep.item.event
        prior = self.lookup(event.source, event.dedupe_id)
        if prior is not None:
            outcome = (
                Outcome.DUPLICATE if prior.content_hash == event.content_hash else Outcome.CONFLICT
            )
            return AppendResult(
                outcome,
                prior.event_id,
                prior.incident_id,
                None,
                event.dedupe_key_text(),
                prior.recorded_by,
                prior.visibility,
            )
        self._head += 1
        position = self._head
        ckey = chain_key(event.incident_id)
        tip = self._changed.get(ckey)
        if tip is None:
            if ckey not in self._chains_checked:
                self.prefetch_chains([event.incident_id])
            tip = self._heads.get(ckey)
        prev_hash = tip.last_hash if tip is not None else None
        link = link_hash(prev_hash or GENESIS, position, prep.digest)
        row = StoredEvent._make((position, *prep.tail, prev_hash, link))
        self._rows.append(row)
        self._changed[ckey] = ChainHead(position, link, (tip.event_count if tip else 0) + 1)
        self._checked.add((event.source, event.dedupe_id))
        self._known[(event.source, event.dedupe_id)] = ExistingKey(
            event.id, event.incident_id, event.content_hash, prep.item.recorded_by, event.visibility
        )
        if self.projection is not None:
            self.projection.fold(row, event)
        return AppendResult(Outcome.CREATED, event.id, event.incident_id, position)

    def emit(self, event: Event, recorded_by: str) -> AppendResult:
        """Prepare and append an event a command produced."""
        return self.append(_prepare_one(PendingEvent(event, recorded_by), self.now_us))

    def finish(self) -> None:
        """Write the transaction's rows, outbox rows, chain tips, log head and projections."""
        if self._rows:
            self.tx.insert_events(self._rows)
            if self.destinations:
                self.tx.insert_outbox(outbox_entries(self._rows, self.destinations, self.now_us))
            self.tx.save_chain_heads(self._changed)
            self.tx.set_head(self._head)
        if self.projection is not None:
            self.projection.flush()


def write_group(
    tx: WriteTransaction,
    pending: Sequence[PendingEvent],
    now_us: int | None = None,
    *,
    prepared: Sequence[PreparedEvent] | None = None,
    optimistic: bool = False,
    projection: Projection | None = None,
) -> list[AppendResult]:
    """Append ``pending`` in order inside ``tx``; return one result per event.

    Duplicates inside the group are treated exactly like duplicates of stored events.
    """
    now_us = now_micros() if now_us is None else now_us
    prepared = prepare(pending, now_us) if prepared is None else prepared
    session = AppendSession(tx, now_us, projection)
    session.begin(prepared, optimistic=optimistic)
    results = [session.append(prep) for prep in prepared]
    session.finish()
    return results
