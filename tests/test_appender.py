"""The group-commit writer keeps serving when a caller gives up on its request."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from incidents.app import Container
from incidents.events.envelope import normalize
from incidents.orchestrator.projection import ProjectionSession
from incidents.timeline.append import GroupCommitAppender, GroupStats, Outcome, PendingEvent
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


def test_requests_that_arrive_while_the_log_lock_is_awaited_join_that_transaction(
    container: Container,
) -> None:
    # Under contention (another server process holds the lock) the queue fills while
    # the writer waits; what queued meanwhile is appended in the same transaction.
    asked, release = threading.Event(), threading.Event()
    inner = container.writer

    class Contended:
        optimistic_dedupe = inner.optimistic_dedupe

        @contextlib.contextmanager
        def transaction(self) -> Iterator[Any]:
            with inner.transaction() as tx:
                take = tx.lock_head

                def lock_head() -> int:
                    asked.set()
                    release.wait(30)
                    return take()

                tx.lock_head = lock_head  # type: ignore[method-assign]
                yield tx

        def close(self) -> None:
            pass

    seen: list[GroupStats] = []
    appender = GroupCommitAppender(Contended(), projection=ProjectionSession)
    appender.on_group(seen.append)
    appender.start()
    try:
        first = appender.submit([PendingEvent(normalize(event(1)), "alice@example.com")])
        assert asked.wait(30)
        later = [
            appender.submit([PendingEvent(normalize(event(n)), "alice@example.com")])
            for n in (2, 3)
        ]
        release.set()
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
    asked, release = threading.Event(), threading.Event()
    inner = container.writer
    late: list[Any] = []

    class Poisoned:
        optimistic_dedupe = inner.optimistic_dedupe

        @contextlib.contextmanager
        def transaction(self) -> Iterator[Any]:
            with inner.transaction() as tx:
                take, insert = tx.lock_head, tx.insert_events

                def lock_head() -> int:
                    asked.set()
                    release.wait(30)
                    return take()

                def insert_events(rows: Any) -> None:
                    if any(row.event_id == "evt-666" for row in rows):
                        if not late:
                            late.append(submit(4))
                        raise ValueError("this row cannot be stored")
                    insert(rows)

                tx.lock_head = lock_head  # type: ignore[method-assign]
                tx.insert_events = insert_events  # type: ignore[method-assign]
                yield tx

        def close(self) -> None:
            pass

    seen: list[GroupStats] = []
    appender = GroupCommitAppender(Poisoned(), projection=ProjectionSession)
    appender.on_group(seen.append)

    def submit(n: int) -> Any:
        return appender.submit([PendingEvent(normalize(event(n)), "alice@example.com")])

    appender.start()
    try:
        first = submit(1)
        assert asked.wait(30)
        bad, good = submit(666), submit(2)
        release.set()
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
    asked, release = threading.Event(), threading.Event()
    inner = container.writer
    failures: list[int] = []

    class Flaky:
        optimistic_dedupe = inner.optimistic_dedupe

        @contextlib.contextmanager
        def transaction(self) -> Iterator[Any]:
            with inner.transaction() as tx:
                take, lookup = tx.lock_head, tx.existing
                locked: list[bool] = []

                def lock_head() -> int:
                    asked.set()
                    release.wait(30)
                    locked.append(True)
                    return take()

                def existing(keys: Any) -> Any:
                    # The lookup of the joiners' keys, once.
                    if locked and not failures and any(k[1] == "evt-2" for k in keys):
                        failures.append(len(keys))
                        raise ConnectionError("the database went away")
                    return lookup(keys)

                tx.lock_head = lock_head  # type: ignore[method-assign]
                tx.existing = existing  # type: ignore[method-assign]
                yield tx

        def close(self) -> None:
            pass

    appender = GroupCommitAppender(Flaky(), projection=ProjectionSession)
    appender.start()
    try:
        first = appender.submit([PendingEvent(normalize(event(1)), "alice@example.com")])
        assert asked.wait(30)
        later = [
            appender.submit([PendingEvent(normalize(event(n)), "alice@example.com")])
            for n in (2, 3)
        ]
        release.set()
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
