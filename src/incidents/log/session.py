"""Appending to the timeline: dedupe, positions, the hash chain, and group commit.

Writers serialise on the log head row (PostgreSQL: ``SELECT ... FOR UPDATE``; SQLite:
``BEGIN IMMEDIATE``) for the length of their transaction. Positions are therefore
handed out in commit order: a reader that has seen position N never later finds a
committed event below N, which is the gap problem of sequence-ordered logs solved at
its root. The cost, one writer at a time, is paid back by group commit: concurrent
requests are gathered into one transaction with one fsync.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence, Sized
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from incidents.events.envelope import Event
from incidents.events.timeformat import now_micros
from incidents.log.chain import GENESIS, chain_key, link_hash, row_digest
from incidents.log.errors import DedupeRace
from incidents.log.records import ChainHead, ExistingKey, OutboxEntry, StoredEvent
from incidents.policy.model import Decision
from incidents.policy.redaction import needs_redaction

log = logging.getLogger(__name__)

DUPLICATE_MESSAGE = "Event already exists with this dedupe key"


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

    def may_be_disclosed_to(self, decision: Decision) -> bool:
        """Whether the caller may learn if a stored event equals what they sent.

        "Same content" against "different content" is an oracle: a caller who cannot
        read the stored event in full could confirm guesses of its redacted values by
        replaying variants. Only its recorder, or a reader who sees everything it may
        hold, is told; everyone else gets one answer for any use of the key.
        """
        if self.outcome is Outcome.CREATED or self.stored_by == decision.subject.id:
            return True
        return (self.stored_visibility or "public") in decision.visibilities and not (
            needs_redaction(decision)
        )

    def as_dict(self) -> dict[str, object]:
        """The guide's response body for this result."""
        if self.outcome is Outcome.CONFLICT:
            return {
                "status": 409,
                "event_id": self.event_id,
                "created": False,
                "incident_id": self.incident_id,
                "title": "Duplicate event conflict",
                "detail": conflict_detail(self.dedupe_key),
            }
        body: dict[str, object] = {
            "event_id": self.event_id,
            "created": self.outcome is Outcome.CREATED,
            "incident_id": self.incident_id,
        }
        if self.outcome is Outcome.DUPLICATE:
            body["message"] = DUPLICATE_MESSAGE
        else:
            body["position"] = self.position
        return body


KEY_IN_USE = (
    "An event is already stored under dedupe key {key}, recorded by another caller; "
    "it is not appended again. Use a new id (or im.origin_id) for a new event."
)


def key_in_use(result: AppendResult) -> dict[str, object]:
    """The answer for a key whose stored event the caller may not compare against."""
    return {
        "status": 409,
        "created": False,
        "title": "Dedupe key in use",
        "detail": KEY_IN_USE.format(key=result.dedupe_key),
    }


def conflict_detail(dedupe_key: str) -> str:
    """The 409 message: names the key and says what to check."""
    stored = f"An event with dedupe key {dedupe_key} is already stored with different content."
    if "im.origin_id" in dedupe_key:
        return (
            f"{stored} Origin ids must be unique per source system: check how im.origin_id "
            "is generated (for example pagerduty:alert:P123456, not pagerduty:alert)."
        )
    return f"{stored} Event ids must be unique per source: send a new id for a new event."


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event waiting to be appended, with who is recording it."""

    event: Event
    recorded_by: str


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

    def clear(self) -> None: ...


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


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """An event turned into its row, all but the parts only the log lock can give."""

    item: PendingEvent
    # The columns from incident_id to content_hash (EVENT_COLUMNS[1:16]).
    tail: tuple[Any, ...]
    digest: bytes


def outbox_entries(
    rows: Sequence[StoredEvent], destinations: Sequence[str], now_us: int
) -> list[OutboxEntry]:
    """One outbox row per stored event and destination, due at once."""
    return [
        OutboxEntry(row.position, row.incident_id, row.type, destination, now_us, now_us)
        for row in rows
        for destination in destinations
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
        destinations: Sequence[str] = (),
    ) -> None:
        self.tx = tx
        self.now_us = now_us
        self.projection = projection
        # Outbox destinations: each created event is queued for each, in this transaction.
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


class Rejected(Exception):
    """A command refused what it was asked, before appending anything.

    Fails only its own submission; the rest of the group commits.
    """


class Command(Protocol):
    """A change decided under the log lock, on the state the transaction sees."""

    def execute(self, session: AppendSession) -> Any:
        """Append events through ``session.emit``; raise :class:`Rejected` to refuse."""
        ...


@runtime_checkable
class KeyedCommand(Command, Protocol):
    """A command that knows before it runs which dedupe keys it will look up.

    They are looked up with the group's own, before the log lock where the backend
    allows it, which shortens the time the lock is held.
    """

    @property
    def dedupe_keys(self) -> Sequence[tuple[str, str]]: ...


@dataclass(slots=True)
class _Submission:
    pending: Sequence[PendingEvent]
    future: Future[Any]
    command: Command | None = None

    @property
    def size(self) -> int:
        """Events it brings to a group: its events, or what a sized command (a
        delivery of alerts) will emit, or one."""
        if self.command is None:
            return len(self.pending)
        return len(self.command) if isinstance(self.command, Sized) else 1


_STOP = object()


def _command_keys(group: Sequence[_Submission]) -> list[tuple[str, str]]:
    """The dedupe keys the group's commands name in advance."""
    return [
        key
        for sub in group
        if isinstance(sub.command, KeyedCommand)
        for key in sub.command.dedupe_keys
    ]


@dataclass(frozen=True, slots=True)
class GroupStats:
    """How one committed group went: what it wrote, and its time with the log lock.

    Every writer of every server process takes the one log lock; the time it is held
    bounds how many events a database can take, however many processes append.
    """

    submissions: int
    # Events stored (duplicates not counted).
    events: int
    # From asking for the log lock to holding it.
    lock_wait_seconds: float
    # From holding the log lock to the end of the commit, which releases it.
    lock_held_seconds: float


def _settle(future: Future[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    """Answer a request, unless its caller gave up (a client that disconnected
    cancels its future; what it asked for is committed all the same)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


class GroupCommitAppender:
    """Gathers concurrent append requests into shared transactions on one writer thread.

    One fsync per request would cap single-event appends at the disk's sync rate;
    requests arriving while a transaction is in flight wait for the next one, so
    throughput grows with concurrency while every caller still learns its own result
    only after its events are durable.
    """

    def __init__(
        self,
        writer: EventWriter,
        *,
        max_events: int = 20_000,
        projection: ProjectionFactory | None = None,
        outbox_destinations: Sequence[str] = (),
    ) -> None:
        self._writer = writer
        self._max_events = max_events
        self._projection = projection
        self._destinations = tuple(outbox_destinations)
        self._group_listeners: list[Callable[[GroupStats], None]] = []
        self._queue: queue.SimpleQueue[_Submission | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Set by the writer thread when it has taken the stop marker off the queue.
        self._stopping = False

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="timeline-writer", daemon=True
                )
                self._thread.start()

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (cheap, non-blocking) after each transaction that commits.

        The outbox relay uses it to wake up at once instead of at its next poll.
        """
        self._group_listeners.append(lambda _stats: listener())

    def on_group(self, listener: Callable[[GroupStats], None]) -> None:
        """Call ``listener`` (cheap, non-blocking) with the figures of each committed group
        (the metrics record them)."""
        self._group_listeners.append(listener)

    def stop(self) -> None:
        """Finish the queued work, then stop the writer thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()

    def submit(self, pending: Sequence[PendingEvent]) -> Future[list[AppendResult]]:
        """Queue events for the next group; the future resolves once they are committed."""
        future: Future[list[AppendResult]] = Future()
        if not pending:
            future.set_result([])
            return future
        if self._thread is None:
            raise RuntimeError("the appender is not running")
        self._queue.put(_Submission(pending, future))
        return future

    def submit_command(self, command: Command) -> Future[Any]:
        """Queue a command for the next group; the future resolves to what it returned
        once its events are committed (or to the :class:`Rejected` it raised)."""
        future: Future[Any] = Future()
        if self._thread is None:
            raise RuntimeError("the appender is not running")
        self._queue.put(_Submission((), future, command))
        return future

    def _take(self, count: int) -> list[_Submission]:
        """What is queued, without waiting, while the group holds under ``max_events``
        (``count`` events so far). A stop marker ends it and stops the writer after
        this group."""
        taken: list[_Submission] = []
        while count < self._max_events:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._stopping = True
                break
            assert isinstance(item, _Submission)
            taken.append(item)
            count += item.size
        return taken

    def _run(self) -> None:
        self._stopping = False
        while not self._stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            assert isinstance(item, _Submission)
            self._commit([item, *self._take(item.size)])
        # Anything queued after the stop marker still gets an answer.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Submission):
                _settle(item.future, error=RuntimeError("the appender stopped"))

    def _commit(self, group: list[_Submission], *, join: bool = True) -> None:
        try:
            self._commit_together(group, join)
        except Exception as exc:
            if len(group) == 1:
                log.exception("append transaction failed for %d events", len(group[0].pending))
                _settle(group[0].future, error=exc)
                return
            # One request's events must not fail the others they happened to share a
            # transaction with: try each on its own, so only the culprit fails.
            log.warning("group of %d requests failed (%s); retrying one by one", len(group), exc)
            # Alone, without joiners: a request that cannot be stored must not take
            # each newcomer into one more failed transaction (and one more retry).
            for sub in group:
                self._commit([sub], join=False)

    def _commit_together(self, group: list[_Submission], join: bool = True) -> None:
        """One transaction for the whole group; raises if it fails."""
        flat = [p for sub in group for p in sub.pending]
        now_us = now_micros()
        prepared = prepare(flat, now_us)
        try:
            outcomes, stats = self._transaction(
                group, prepared, now_us, self._writer.optimistic_dedupe, join
            )
        except DedupeRace:
            # Rare: a concurrent writer stored one of these keys meanwhile.
            outcomes, stats = self._transaction(group, prepared, now_us, False, join)
        for listener in self._group_listeners:
            try:
                listener(stats)
            except Exception:
                # Committed is committed: a failing listener must not make the group
                # look failed (it would be retried, and commands run twice).
                log.exception("commit listener failed")
        for sub, (ok, value) in zip(group, outcomes, strict=True):
            if ok:
                _settle(sub.future, result=value)
            else:
                _settle(sub.future, error=value)

    def _transaction(
        self,
        group: list[_Submission],
        prepared: list[PreparedEvent],
        now_us: int,
        optimistic: bool,
        join: bool,
    ) -> tuple[list[tuple[bool, Any]], GroupStats]:
        outcomes: list[tuple[bool, Any]] = []
        with self._writer.transaction() as tx:
            projection = self._projection(tx.projections) if self._projection else None
            session = AppendSession(tx, now_us, projection, self._destinations)
            session.begin(prepared, optimistic=optimistic, extra_keys=_command_keys(group))
            # Requests that arrived while the lock was awaited join this transaction:
            # under contention (several server processes) a group's fixed costs, such
            # as rewriting every incident a delivery of alerts touches, are then shared
            # by more events instead of paid again by a group of its own.
            joined = self._take(sum(sub.size for sub in group)) if join else []
            if joined:
                # In the group before anything can fail: a failure retries them too.
                group.extend(joined)
                more = prepare([p for sub in joined for p in sub.pending], now_us)
                prepared.extend(more)
                session.admit(more, _command_keys(joined))
            offset = 0
            for sub in group:
                if sub.command is None:
                    n = len(sub.pending)
                    outcomes.append(
                        (True, [session.append(p) for p in prepared[offset : offset + n]])
                    )
                    offset += n
                    continue
                try:
                    outcomes.append((True, sub.command.execute(session)))
                except Rejected as exc:
                    outcomes.append((False, exc))
            session.finish()
        stats = GroupStats(
            submissions=len(group),
            events=session.created,
            lock_wait_seconds=session.locked_at - session.lock_asked,
            lock_held_seconds=time.perf_counter() - session.locked_at,
        )
        return outcomes, stats
