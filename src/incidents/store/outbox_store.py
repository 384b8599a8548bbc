"""Claiming, settling and administering outbox rows on both backends.

PostgreSQL: a claim is ``SELECT ... FOR UPDATE SKIP LOCKED`` in a transaction that
stays open while the rows are delivered and settled; relays running side by side
skip each other's rows, and a relay that dies mid-delivery releases its rows with its
connection (they are due again at once).

SQLite has one writer at a time and a transaction held across a delivery would stall
every append, so a claim is a short write that leases the rows (moves their
``next_attempt_us`` past the lease); settling is a second short write. A relay that
dies mid-delivery leaves its rows to come due again when the lease ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    any_,
    bindparam,
    delete,
    func,
    select,
    text,
    update,
)

from incidents.log.cloudevent import cloudevent_json
from incidents.log.records import EVENT_COLUMNS, StoredEvent
from incidents.store.engine import Backend, writes
from incidents.store.schema import outbox, timeline_events

_o = outbox.c
_EVENT_COLUMNS = [timeline_events.c[name] for name in EVENT_COLUMNS]
_PENDING = (_o.processed_us.is_(None), _o.dead_us.is_(None))


class OutboxRecord(NamedTuple):
    """A claimed row: what a destination needs to deliver it."""

    id: int
    position: int
    aggregate_id: str | None
    event_type: str
    # The structured-mode CloudEvent.
    payload: bytes
    destination: str
    attempts: int
    # The CloudEvent's id; empty when the event is no longer stored (nothing to deliver).
    event_id: str


_CLAIM_COLUMNS = (
    _o.id,
    _o.position,
    _o.aggregate_id,
    _o.event_type,
    _o.payload,
    _o.destination,
    _o.attempts,
)


class OutboxItem(NamedTuple):
    """A row as ``incidents admin outbox list`` shows it."""

    id: int
    position: int
    aggregate_id: str | None
    event_type: str
    destination: str
    created_us: int
    next_attempt_us: int
    attempts: int
    last_error: str | None
    processed_us: int | None
    dead_us: int | None

    @property
    def state(self) -> str:
        """delivered, dead, retrying (failed at least once) or pending."""
        if self.processed_us is not None:
            return "delivered"
        if self.dead_us is not None:
            return "dead"
        return "retrying" if self.last_error is not None else "pending"


_ITEM_COLUMNS = (
    _o.id,
    _o.position,
    _o.aggregate_id,
    _o.event_type,
    _o.destination,
    _o.created_us,
    _o.next_attempt_us,
    _o.attempts,
    _o.last_error,
    _o.processed_us,
    _o.dead_us,
)


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed delivery: what to record on its row."""

    id: int
    attempts: int
    last_error: str
    next_attempt_us: int
    # Set when the attempts ran out: the row is dead-lettered.
    dead_us: int | None


class OutboxRowNotFound(LookupError):
    """No outbox row has the given id."""


class OutboxStateError(ValueError):
    """The row is not in a state the operation applies to."""


class Claim:
    """Rows claimed by one relay; :meth:`settle` records how their delivery went."""

    def __init__(
        self,
        rows: list[OutboxRecord],
        settle_on: Connection | None,
        engine: Engine,
        *,
        keep_delivered: bool = True,
    ):
        self.rows = rows
        self._conn = settle_on
        self._engine = engine
        self._keep = keep_delivered

    def settle(self, delivered: Sequence[int], failed: Sequence[Failure], now_us: int) -> None:
        """Settle ``delivered`` (deleted, or marked processed when delivered rows are
        kept) and record each failure."""
        if self._conn is not None:
            _settle(self._conn, delivered, failed, now_us, self._keep)
            return
        with self._engine.begin() as conn:
            _settle(conn, delivered, failed, now_us, self._keep)


def _among_ids(conn: Connection) -> ColumnElement[bool]:
    """``id`` is one of the ``ids`` parameter's values.

    PostgreSQL takes them as one array: an IN list of hundreds of placeholders is
    rendered and parsed anew for every batch.
    """
    if conn.dialect.name == "postgresql":
        return _o.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))
    return _o.id.in_(bindparam("ids", expanding=True))


def _settle(
    conn: Connection, delivered: Sequence[int], failed: Sequence[Failure], now: int, keep: bool
) -> None:
    if delivered and not keep:
        # Deleting a row costs PostgreSQL a third of rewriting it (no new row version,
        # no index entries), and leaves nothing for the purge to do.
        conn.execute(delete(outbox).where(_among_ids(conn)), {"ids": list(delivered)})
    elif delivered:
        conn.execute(
            update(outbox)
            .where(_among_ids(conn))
            .values(processed_us=now, attempts=_o.attempts + 1, last_error=None),
            {"ids": list(delivered)},
        )
    if failed:
        conn.execute(
            update(outbox)
            .where(_o.id == bindparam("row_id"))
            .values(
                attempts=bindparam("n"),
                last_error=bindparam("error"),
                next_attempt_us=bindparam("due"),
                dead_us=bindparam("dead"),
            ),
            [
                {
                    "row_id": f.id,
                    "n": f.attempts,
                    "error": f.last_error,
                    "due": f.next_attempt_us,
                    "dead": f.dead_us,
                }
                for f in failed
            ],
        )


class OutboxStore:
    """The outbox table, for the relay and for ``incidents admin outbox``."""

    def __init__(
        self,
        engine: Engine,
        backend: Backend,
        lease_seconds: float = 60.0,
        *,
        keep_delivered: bool = True,
    ) -> None:
        self._engine = engine
        self._backend = backend
        self._lease_us = int(lease_seconds * 1_000_000)
        # False: a delivered row is deleted at once instead of marked processed.
        self._keep = keep_delivered

    @contextlib.contextmanager
    def claim(self, destinations: Sequence[str], now_us: int, limit: int) -> Iterator[Claim]:
        """Claim up to ``limit`` due rows for ``destinations``, earliest due first.

        Settle them inside the block. On PostgreSQL the claim ends with the block (an
        exception rolls back, releasing the rows unsettled).
        """
        pending = (
            *_PENDING,
            _o.next_attempt_us <= now_us,
            _o.destination.in_(list(destinations)),
        )
        if self._backend is Backend.POSTGRESQL:
            with self._engine.begin() as conn:
                query = (
                    select(*_CLAIM_COLUMNS, *_EVENT_COLUMNS)
                    .select_from(
                        outbox.outerjoin(timeline_events, timeline_events.c.position == _o.position)
                    )
                    .where(*pending)
                    .order_by(_o.next_attempt_us, _o.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True, of=outbox)
                )
                rows = [
                    _claimed(row[: len(_CLAIM_COLUMNS)], row[len(_CLAIM_COLUMNS) :])
                    for row in conn.execute(query)
                ]
                yield Claim(rows, conn, self._engine, keep_delivered=self._keep)
            return
        ids = select(_o.id).where(*pending).order_by(_o.next_attempt_us, _o.id).limit(limit)
        # Look before taking the write lock: the appender needs it far more often.
        with self._engine.connect() as conn:
            if conn.execute(ids.limit(1)).first() is None:
                yield Claim([], None, self._engine)
                return
        with self._engine.begin() as conn:
            # One statement, so the write lock is taken at once (no read-to-write upgrade).
            leased = list(
                conn.execute(
                    update(outbox)
                    .where(_o.id.in_(ids.scalar_subquery()))
                    .values(next_attempt_us=now_us + self._lease_us)
                    .returning(*_CLAIM_COLUMNS)
                )
            )
        with self._engine.connect() as conn:
            events = {
                row[0]: row
                for row in conn.execute(
                    select(*_EVENT_COLUMNS).where(
                        timeline_events.c.position.in_({row.position for row in leased})
                    )
                )
            }
        rows = sorted(
            (_claimed(row, events.get(row.position)) for row in leased), key=lambda r: r.id
        )
        yield Claim(rows, None, self._engine, keep_delivered=self._keep)

    def next_due(self, destinations: Sequence[str]) -> int | None:
        """When the earliest pending row for ``destinations`` is due (None: none pending)."""
        query = select(_o.next_attempt_us).where(*_PENDING, _o.destination.in_(list(destinations)))
        with self._engine.connect() as conn:
            value = conn.execute(query.order_by(_o.next_attempt_us).limit(1)).scalar()
        return None if value is None else int(value)

    def list(self, *, failed: bool = False, limit: int = 50) -> list[OutboxItem]:
        """Undelivered rows (pending, retrying, dead), oldest first; ``failed``: only
        rows whose last delivery failed (retrying or dead)."""
        query = select(*_ITEM_COLUMNS).where(_o.processed_us.is_(None))
        if failed:
            query = query.where(_o.last_error.is_not(None))
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(_o.id).limit(limit))
            return [OutboxItem(*row) for row in rows]

    def get(self, row_id: int) -> OutboxItem:
        """One row; raises :class:`OutboxRowNotFound`."""
        with self._engine.connect() as conn:
            return _get(conn, row_id)

    def retry(self, row_id: int, now_us: int) -> OutboxItem:
        """Put a dead or failing row back to pending, due now, with a fresh attempt budget."""
        with writes(self._engine).begin() as conn:
            item = _get(conn, row_id)
            if item.processed_us is not None:
                raise OutboxStateError(f"outbox row {row_id} was delivered; nothing to retry")
            conn.execute(
                update(outbox)
                .where(_o.id == row_id)
                .values(dead_us=None, attempts=0, next_attempt_us=now_us)
            )
            return _get(conn, row_id)

    def discard(self, row_id: int) -> OutboxItem:
        """Delete a row that should never be delivered; returns what it was."""
        with writes(self._engine).begin() as conn:
            item = _get(conn, row_id)
            conn.execute(delete(outbox).where(_o.id == row_id))
            return item

    def purge(self, processed_before_us: int) -> int:
        """Delete rows delivered before the given time; returns how many."""
        with self._engine.begin() as conn:
            result = conn.execute(delete(outbox).where(_o.processed_us < processed_before_us))
            return int(result.rowcount or 0)

    def counts_for(self, destination: str) -> dict[str, int]:
        """Undelivered rows of one destination: pending (or retrying) and dead."""
        query = select(_o.dead_us.is_(None), func.count()).where(
            _o.processed_us.is_(None), _o.destination == destination
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query.group_by(_o.dead_us.is_(None))).all()
        found = {bool(alive): int(n) for alive, n in rows}
        return {"pending": found.get(True, 0), "dead": found.get(False, 0)}

    def counts(self) -> dict[str, int]:
        """How many rows are pending and how many dead (for health and metrics)."""
        query = text(
            "SELECT count(*) FILTER (WHERE dead_us IS NULL), count(*) FILTER (WHERE dead_us IS "
            "NOT NULL) FROM outbox WHERE processed_us IS NULL"
        )
        with self._engine.connect() as conn:
            row: Any = conn.execute(query).one()
        return {"pending": int(row[0]), "dead": int(row[1])}


def _claimed(row: Sequence[Any], event: Sequence[Any] | None) -> OutboxRecord:
    """A claimed row with its payload: the stored event rendered now, or the copy a
    row from before revision 0005 carries. ``event_id`` stays empty when neither
    exists (the event is no longer stored)."""
    row_id, position, aggregate_id, event_type, payload, destination, attempts = row
    event_id = ""
    if event is not None and event[0] is not None:
        stored = StoredEvent(*event)
        event_id = stored.event_id
        if payload is None:
            payload = cloudevent_json(stored)
    elif payload is not None:
        event_id = str(orjson.loads(payload)["id"])
    return OutboxRecord(
        row_id, position, aggregate_id, event_type, payload or b"", destination, attempts, event_id
    )


def _get(conn: Connection, row_id: int) -> OutboxItem:
    row = conn.execute(select(*_ITEM_COLUMNS).where(_o.id == row_id)).one_or_none()
    if row is None:
        raise OutboxRowNotFound(f"no outbox row with id {row_id}")
    return OutboxItem(*row)
