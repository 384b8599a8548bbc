"""Concurrent writers: racing duplicates store exactly one event, and positions have no gaps.

Writers run in separate processes, each with its own connection and group-commit
writer, so the database's own locking is what is being tested, not one process's queue.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import text

from incidents.app import Container, build_container
from incidents.events.envelope import normalize
from incidents.log.session import Outcome
from tests.conftest import event, make_settings

_CTX = mp.get_context("spawn")


def _race_worker(database_url: str, barrier: Any, results: Any, raw: dict[str, Any]) -> None:
    container = build_container(make_settings(database_url), apply_migrations=False)
    container.start()
    try:
        barrier.wait()
        [result] = container.timeline.append([normalize(raw)], "racer@example.com")
        results.put(result.outcome.value)
    finally:
        container.close()


def test_processes_racing_the_same_event_store_exactly_one(database_url: str) -> None:
    setup = build_container(make_settings(database_url))
    setup.close()
    processes = 6
    barrier = _CTX.Barrier(processes)
    results = _CTX.Queue()
    raw = event("raced", imoriginid="pagerduty:alert:P1")
    workers = [
        _CTX.Process(target=_race_worker, args=(database_url, barrier, results, raw))
        for _ in range(processes)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    outcomes = sorted(results.get(timeout=5) for _ in range(processes))
    assert outcomes == ["created"] + ["duplicate"] * (processes - 1)
    check = build_container(make_settings(database_url), apply_migrations=False)
    try:
        with check.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM timeline_events")).scalar_one() == 1
    finally:
        check.close()


def test_threads_racing_the_same_event_store_exactly_one(container: Container) -> None:
    raw = event("raced")
    start = threading.Event()

    def race(_: int) -> Outcome:
        start.wait()
        [result] = container.timeline.append([normalize(raw)], "racer@example.com")
        return result.outcome

    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(race, i) for i in range(32)]
        start.set()
        outcomes = [f.result() for f in futures]
    assert outcomes.count(Outcome.CREATED) == 1
    assert outcomes.count(Outcome.DUPLICATE) == 31


def _append_worker(database_url: str, worker: int, batches: int, barrier: Any) -> None:
    container = build_container(make_settings(database_url), apply_migrations=False)
    container.start()
    try:
        barrier.wait()
        for b in range(batches):
            size = 1 + (b * 7 + worker) % 13
            events = [
                normalize(event(f"w{worker}-b{b}-{i}", incident=f"INC-{(b + i) % 5}"))
                for i in range(size)
            ]
            container.timeline.append(events, f"writer{worker}@example.com")
    finally:
        container.close()


def test_a_reader_following_positions_never_misses_a_later_commit(database_url: str) -> None:
    """The gap problem: with concurrent writers, a position must never appear to a reader
    before every lower position is committed, or a reader following positions skips it."""
    setup = build_container(make_settings(database_url))
    writers, batches = 3, 40
    barrier = _CTX.Barrier(writers + 1)
    expected = sum(1 + (b * 7 + w) % 13 for w in range(writers) for b in range(batches))
    procs = [
        _CTX.Process(target=_append_worker, args=(database_url, w, batches, barrier))
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    seen: list[int] = []
    last = 0
    barrier.wait()
    deadline = time.monotonic() + 180
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            with setup.engine.connect() as conn:
                rows = [
                    r[0]
                    for r in conn.execute(
                        text(
                            "SELECT position FROM timeline_events WHERE position > :last "
                            "ORDER BY position"
                        ),
                        {"last": last},
                    )
                ]
            # Whatever a reader sees past its mark must start right after it, with no hole
            # that a slower transaction could fill later.
            assert rows == list(range(last + 1, last + 1 + len(rows))), (last, rows[:5])
            seen.extend(rows)
            if rows:
                last = rows[-1]
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        assert len(seen) == expected
        with setup.engine.connect() as conn:
            assert (
                conn.execute(text("SELECT count(*) FROM timeline_events")).scalar_one() == expected
            )
        for incident in (f"INC-{i}" for i in range(5)):
            assert setup.timeline.verify(incident).intact
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        setup.close()


def test_a_failing_request_does_not_fail_the_others_in_its_group(container: Container) -> None:
    """Requests share transactions; when one of them cannot be stored, the others are."""
    import contextlib
    from collections.abc import Iterator as _Iterator

    from incidents.log.session import PendingEvent
    from incidents.timeline.group_commit import GroupCommitAppender

    gate = threading.Event()
    inner = container.writer

    class Poisoned:
        optimistic_dedupe = inner.optimistic_dedupe

        @contextlib.contextmanager
        def transaction(self) -> _Iterator[Any]:
            gate.wait(30)
            with inner.transaction() as tx:
                original = tx.insert_events

                def insert(rows: Any) -> None:
                    if any(row.event_id == "evt-poison" for row in rows):
                        raise ValueError("this row cannot be stored")
                    original(rows)

                tx.insert_events = insert  # type: ignore[method-assign]
                yield tx

        def close(self) -> None:
            pass

    appender = GroupCommitAppender(Poisoned())
    appender.start()
    try:
        first = appender.submit([PendingEvent(normalize(event("first")), "a@example.com")])
        good = appender.submit([PendingEvent(normalize(event("good")), "a@example.com")])
        bad = appender.submit([PendingEvent(normalize(event("poison")), "a@example.com")])
        gate.set()
        assert first.result(30)[0].outcome is Outcome.CREATED
        assert good.result(30)[0].outcome is Outcome.CREATED
        assert isinstance(bad.exception(30), ValueError)
    finally:
        appender.stop()
    ids = [row.event_id for row in container.reader.chain("INC-1")]
    assert ids == ["evt-first", "evt-good"]
