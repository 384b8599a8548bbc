"""The group-commit writer keeps serving when a caller gives up on its request."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from incidents.app import Container
from incidents.events.envelope import normalize
from incidents.incident.projection import ProjectionSession
from incidents.log.group_stats import GroupStats
from incidents.log.session import Outcome, PendingEvent
from incidents.timeline.group_commit import GroupCommitAppender
from tests.conftest import event


def test_a_cancelled_request_is_committed_and_the_writer_goes_on(container: Container) -> None:
    futures = [
        container.appender.submit([PendingEvent(normalize(event(n)), "alice@example.com")])
        for n in range(20)
    ]
    # A client that disconnects cancels its future while it waits in the queue.
    cancelled = [f for f in futures[::2] if f.cancel()]
    later = container.appender.submit([PendingEvent(normalize(event(99)), "alice@example.com")])
    assert later.result(timeout=30)[0].event_id == "evt-99"
    for future in futures:
        if future not in cancelled:
            assert future.result(timeout=30)[0].outcome is Outcome.CREATED
    # Cancelled or not, every event was stored exactly once.
    assert container.reader.head_position() == 21


def _sample(metrics: str, name: str) -> float:
    (line,) = [line for line in metrics.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


def test_each_committed_group_reports_its_events_and_its_time_with_the_log_lock(
    container: Container,
) -> None:
    seen: list[GroupStats] = []
    container.appender.on_group(seen.append)
    before = container.metrics.render().decode()
    pending = [PendingEvent(normalize(event(n)), "alice@example.com") for n in range(5)]
    container.appender.submit(pending).result(timeout=30)
    # The same events again: duplicates, nothing stored.
    container.appender.submit(pending[:2]).result(timeout=30)
    assert [(s.submissions, s.events) for s in seen] == [(1, 5), (1, 0)]
    assert all(s.lock_held_seconds > 0 and s.lock_wait_seconds >= 0 for s in seen)
    after = container.metrics.render().decode()
    for name, grew in (
        ("timeline_append_group_events_sum", 5.0),
        ("timeline_append_group_events_count", 2.0),
        ("timeline_append_lock_held_seconds_count", 2.0),
        ("timeline_append_lock_wait_seconds_count", 2.0),
    ):
        assert _sample(after, name) - _sample(before, name) == grew
    held = _sample(after, "timeline_append_lock_held_seconds_sum")
    assert held - _sample(before, "timeline_append_lock_held_seconds_sum") > 0


class _Contended:
    """The container's writer, with the log lock held elsewhere until :attr:`release`
    is set (:attr:`asked`: the writer waits for it). ``patch`` may replace further
    methods of each transaction."""

    def __init__(self, inner: Any, patch: Callable[[Any], None] = lambda tx: None) -> None:
        self._inner, self._patch = inner, patch
        self.optimistic_dedupe = inner.optimistic_dedupe
        self.asked, self.release = threading.Event(), threading.Event()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._inner.transaction() as tx:
            take = tx.lock_head

            def lock_head() -> int:
                self.asked.set()
                self.release.wait(30)
                return take()

            tx.lock_head = lock_head
            self._patch(tx)
            yield tx

    def close(self) -> None:
        pass


def _submit(appender: GroupCommitAppender, n: int) -> Any:
    return appender.submit([PendingEvent(normalize(event(n)), "alice@example.com")])


def test_requests_that_arrive_while_the_log_lock_is_awaited_join_that_transaction(
    container: Container,
) -> None:
    # Under contention (another server process holds the lock) the queue fills while
    # the writer waits; what queued meanwhile is appended in the same transaction.
    writer = _Contended(container.writer)
    seen: list[GroupStats] = []
    appender = GroupCommitAppender(writer, projection=ProjectionSession)
    appender.on_group(seen.append)
    appender.start()
    try:
        first = _submit(appender, 1)
        assert writer.asked.wait(30)
        later = [_submit(appender, n) for n in (2, 3)]
        writer.release.set()
        results = [f.result(30)[0] for f in (first, *later)]
    finally:
        appender.stop()
    assert [(s.submissions, s.events) for s in seen] == [(3, 3)]
    assert [r.outcome for r in results] == [Outcome.CREATED] * 3
    assert [r.position for r in results] == [1, 2, 3]
    ids = [row.event_id for row in container.reader.chain("INC-1")]
    assert ids == ["evt-1", "evt-2", "evt-3"]
    assert container.timeline.verify("INC-1").intact


def test_a_failed_group_is_retried_request_by_request_without_newcomers(
    container: Container,
) -> None:
    # When a group fails, each of its requests is tried alone so only the culprit
    # fails. Requests arriving meanwhile wait for a transaction of their own: were they
    # joined to the retries, one bad request under steady load would drag every
    # newcomer through a failing transaction and retry after retry.
    late: list[Any] = []

    def poison(tx: Any) -> None:
        insert = tx.insert_events

        def insert_events(rows: Any) -> None:
            if any(row.event_id == "evt-666" for row in rows):
                if not late:
                    late.append(_submit(appender, 4))
                raise ValueError("this row cannot be stored")
            insert(rows)

        tx.insert_events = insert_events

    writer = _Contended(container.writer, poison)
    seen: list[GroupStats] = []
    appender = GroupCommitAppender(writer, projection=ProjectionSession)
    appender.on_group(seen.append)
    appender.start()
    try:
        first = _submit(appender, 1)
        assert writer.asked.wait(30)
        bad, good = _submit(appender, 666), _submit(appender, 2)
        writer.release.set()
        assert first.result(30)[0].outcome is Outcome.CREATED
        assert isinstance(bad.exception(30), ValueError)
        assert good.result(30)[0].outcome is Outcome.CREATED
        assert late[0].result(30)[0].outcome is Outcome.CREATED
    finally:
        appender.stop()
    # The failed transaction held three requests; after it, each commits on its own.
    assert [(s.submissions, s.events) for s in seen] == [(1, 1), (1, 1), (1, 1)]
    ids = [row.event_id for row in container.reader.chain("INC-1")]
    assert ids == ["evt-1", "evt-2", "evt-4"]


def test_requests_that_joined_a_transaction_that_fails_are_still_answered(
    container: Container,
) -> None:
    # Loading what the joiners need fails (the database went away, say): they were
    # taken off the queue, so the retry one by one must answer them too.
    failures: list[int] = []

    def flaky(tx: Any) -> None:
        lookup = tx.existing

        def existing(keys: Any) -> Any:
            # The lookup of the joiners' keys, once.
            if not failures and any(k[1] == "evt-2" for k in keys):
                failures.append(len(keys))
                raise ConnectionError("the database went away")
            return lookup(keys)

        tx.existing = existing

    writer = _Contended(container.writer, flaky)
    appender = GroupCommitAppender(writer, projection=ProjectionSession)
    appender.start()
    try:
        first = _submit(appender, 1)
        assert writer.asked.wait(30)
        later = [_submit(appender, n) for n in (2, 3)]
        writer.release.set()
        results = [f.result(30)[0] for f in (first, *later)]
    finally:
        appender.stop()
    assert failures, "the joiners' lookup did not run"
    assert [r.outcome for r in results] == [Outcome.CREATED] * 3
    assert [row.event_id for row in container.reader.chain("INC-1")] == [
        "evt-1",
        "evt-2",
        "evt-3",
    ]
