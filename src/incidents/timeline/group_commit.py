"""Group commit: concurrent append requests gathered into shared transactions.

One writer thread per process takes what is queued, opens one transaction (one log
lock, one fsync) for all of it, and answers each request with its own results.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence, Sized
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

from incidents.events.timeformat import now_micros
from incidents.log.commands import Command, KeyedCommand, Rejected
from incidents.log.errors import DedupeRace
from incidents.log.group_stats import GroupStats
from incidents.log.ports import EventWriter, ProjectionFactory
from incidents.log.records import OutboxRoute
from incidents.log.session import AppendResult, AppendSession, PendingEvent, PreparedEvent, prepare

log = logging.getLogger(__name__)


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
        outbox_destinations: Sequence[OutboxRoute] = (),
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
