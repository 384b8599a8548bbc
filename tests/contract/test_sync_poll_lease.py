"""One poller per connector across server processes: a lease in the database, taken
with an expiry by the database's clock, renewed while polling (also inside a long
poll) and taken over once it expires; a poll that lost it stops and never moves the
cursor back (both backends). The pollers, and the lease's clock where a test drives
it, run on a driven clock: nothing here waits for time to pass."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from incidents.app import Container
from incidents.events.timeformat import now_micros
from incidents.integrations.sync_poller import SyncPoller
from incidents.store.sync_store import SqlSyncStore
from incidents.sync.engine import PollLease
from tests.contract.sync_support import SN, declare, drain, sn_entry, sync_container
from tests.fakes.jira import FakeJira
from tests.fakes.servicenow import FakeServiceNow

JIRA = "jira:cloud"
LEASE_SECONDS = 30.0
POLL_SECONDS = 10


@pytest.fixture
def two_servers(database_url: str, snow: FakeServiceNow) -> Iterator[tuple[Container, Container]]:
    """Two server processes' containers on one database (their own pollers stopped)."""
    connectors = {"servicenow": [sn_entry(snow.url, poll_seconds=POLL_SECONDS)]}
    first = sync_container(database_url, connectors)
    second = sync_container(database_url, connectors, identities={"other@connectors": ()})
    try:
        yield first, second
    finally:
        second.close()
        first.close()


class Clock:
    def __init__(self) -> None:
        self.now = now_micros()

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)


def counted(
    container: Container, name: str, polls: list[str], clock: Clock, *, db_clock: bool = False
) -> SyncPoller:
    """A poller over ``container``'s engine whose polls are recorded under ``name``;
    its leases follow ``clock`` too unless ``db_clock`` (the database's own clock)."""
    engine = container.sync
    assert engine is not None
    if not db_clock:
        engine.store = SqlSyncStore(container.engine, clock=clock)
    poll = engine.poll

    def recorded(connector_id: str, lease: PollLease | None = None) -> int:
        polls.append(name)
        return poll(connector_id, lease)

    engine.poll = recorded  # type: ignore[method-assign]
    return SyncPoller(engine, holder=name, lease_seconds=LEASE_SECONDS, clock=clock)


def test_only_the_lease_holder_polls_and_another_takes_over_when_it_lapses(
    two_servers: tuple[Container, Container],
) -> None:
    clock = Clock()
    first, second = two_servers
    polls: list[str] = []
    a = counted(first, "a", polls, clock)
    b = counted(second, "b", polls, clock)

    a.tick()
    b.tick()
    assert polls == ["a"] and a.holds(SN) and not b.holds(SN)
    for _ in range(6):  # a minute of intervals: a renews and polls, b never does
        clock.advance(POLL_SECONDS)
        a.tick()
        b.tick()
    assert polls == ["a"] * 7

    # a stops renewing (hung, or killed without letting go): b waits out the lease,
    # then takes it at its next try (every third of a lease).
    clock.advance(LEASE_SECONDS - 1)
    b.tick()
    assert polls == ["a"] * 7
    clock.advance(LEASE_SECONDS / 3 + 1)
    b.tick()
    assert polls == ["a"] * 7 + ["b"]
    a.tick()  # a comes back: the lease is b's now
    clock.advance(POLL_SECONDS)
    a.tick()
    b.tick()
    assert polls == ["a"] * 7 + ["b", "b"]
    assert not a.holds(SN)
    assert first.sync is not None
    status = first.sync.store.status(SN)
    assert status.last_poll_us is not None and status.last_error is None


def test_a_stopping_poller_hands_the_lease_over_at_once(
    two_servers: tuple[Container, Container],
) -> None:
    clock = Clock()
    first, second = two_servers
    polls: list[str] = []
    a = counted(first, "a", polls, clock)
    b = counted(second, "b", polls, clock)
    a.tick()
    b.tick()
    a.stop()
    clock.advance(LEASE_SECONDS / 3)  # b's next try, well before a's lease would lapse
    b.tick()
    assert polls == ["a", "b"]


def test_processes_racing_for_a_free_or_expired_lease_get_exactly_one_holder(
    two_servers: tuple[Container, Container],
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    clock = Clock()
    first, second = two_servers
    stores = [SqlSyncStore(c.engine, clock=clock) for c in (first, second)]
    for _round in range(2):  # a free lease, then an expired one

        def take(i: int) -> bool:
            return stores[i % 2].take_poll_lease(SN, f"p{i}", 30_000_000)

        with ThreadPoolExecutor(max_workers=6) as pool:
            won = list(pool.map(take, range(6)))
        assert won.count(True) == 1
        clock.advance(60)


def test_a_host_whose_clock_runs_ahead_cannot_take_a_live_lease(
    two_servers: tuple[Container, Container],
) -> None:
    first, second = two_servers
    polls: list[str] = []
    a = counted(first, "a", polls, Clock(), db_clock=True)
    ahead = Clock()
    ahead.advance(3600)  # b's host clock is an hour ahead of the database's
    b = counted(second, "b", polls, ahead, db_clock=True)
    a.tick()
    b.tick()
    assert polls == ["a"] and not b.holds(SN)


def _tickets(container: Container, count: int) -> None:
    for n in range(count):
        declare(container, f"Outage {n}")
    drain(container)


def test_a_poll_longer_than_the_lease_keeps_it(
    two_servers: tuple[Container, Container], snow: FakeServiceNow
) -> None:
    clock = Clock()
    first, second = two_servers
    _tickets(first, 6)
    polls: list[str] = []
    a = counted(first, "a", polls, clock)
    b = counted(second, "b", polls, clock)
    assert first.sync is not None
    inbound = first.sync.inbound

    def slow(connector_id: str, ticket: Any, **kw: Any) -> Any:
        clock.advance(LEASE_SECONDS / 3)  # each ticket takes a third of the lease
        b.tick()  # the other process tries meanwhile
        return inbound(connector_id, ticket, **kw)

    first.sync.inbound = slow  # type: ignore[method-assign]
    a.tick()  # six tickets: twice the lease
    assert polls == ["a"] and a.holds(SN) and not b.holds(SN)
    assert first.sync.store.status(SN).last_poll_us is not None


def test_a_poll_that_lost_its_lease_stops_and_never_moves_the_cursor_back(
    two_servers: tuple[Container, Container], snow: FakeServiceNow
) -> None:
    clock = Clock()
    snow.clock = lambda: clock.now / 1e6
    first, second = two_servers
    _tickets(first, 3)
    polls: list[str] = []
    a = counted(first, "a", polls, clock)
    b = counted(second, "b", polls, clock)
    assert first.sync is not None and second.sync is not None
    inbound = first.sync.inbound
    taken: list[str] = []
    cursors: list[int | None] = []

    def hung(connector_id: str, ticket: Any, **kw: Any) -> Any:
        taken.append(ticket.external_id)
        if len(taken) == 1:
            # a hangs past its lease; meanwhile a ticket changes and b takes over.
            clock.advance(LEASE_SECONDS + 1)
            snow.edit(ticket.external_id, short_description="Changed meanwhile")
            b.tick()
            cursors.append(second.sync.store.cursor(SN) if second.sync else None)
        return inbound(connector_id, ticket, **kw)

    first.sync.inbound = hung  # type: ignore[method-assign]
    a.tick()
    assert polls == ["a", "b"]
    assert len(taken) == 1  # a stopped at its next ticket
    assert cursors[0] is not None
    assert first.sync.store.cursor(SN) == cursors[0]  # b's, not a's older one
    assert b.holds(SN) and not a.holds(SN)


def test_only_the_live_holder_saves_the_poll_cursor(
    two_servers: tuple[Container, Container],
) -> None:
    clock = Clock()
    first, _second = two_servers
    store = SqlSyncStore(first.engine, clock=clock)
    assert store.take_poll_lease(SN, "a", 30_000_000)
    assert not store.save_poll(SN, 5, clock.now, None, holder="b")  # no row yet, not b's
    assert store.cursor(SN) is None
    assert store.save_poll(SN, 10, clock.now, None, holder="a")
    clock.advance(31)
    assert not store.save_poll(SN, 11, clock.now, None, holder="a")  # lapsed
    assert store.take_poll_lease(SN, "b", 30_000_000)
    assert store.save_poll(SN, 20, clock.now, None, holder="b")
    assert not store.save_poll(SN, 15, clock.now, None, holder="a")
    assert store.cursor(SN) == 20
    assert store.save_poll(SN, 21, clock.now, None)  # a manual poll holds no lease
    assert store.cursor(SN) == 21


def test_a_lease_that_lapsed_during_another_connectors_poll_is_not_used(
    database_url: str, snow: FakeServiceNow, jira: FakeJira
) -> None:
    jira_entry = {
        "name": "cloud",
        "base_url": jira.url,
        "email": jira.email,
        "api_token": jira.token,
        "project": "OPS",
        "poll_seconds": POLL_SECONDS,
    }
    connectors = {
        "servicenow": [sn_entry(snow.url, poll_seconds=POLL_SECONDS)],
        "jira": [jira_entry],
    }
    first = sync_container(database_url, connectors)
    second = sync_container(database_url, connectors, identities={"other@connectors": ()})
    try:
        clock = Clock()
        _tickets(first, 4)
        polls: list[tuple[str, str]] = []
        pollers = {}
        for name, container in (("a", first), ("b", second)):
            engine = container.sync
            assert engine is not None
            engine.store = SqlSyncStore(container.engine, clock=clock)
            poll = engine.poll

            def recorded(
                connector_id: str,
                lease: PollLease | None = None,
                name: str = name,
                poll: Any = poll,
            ) -> int:
                polls.append((name, connector_id))
                return poll(connector_id, lease)

            engine.poll = recorded  # type: ignore[method-assign]
            pollers[name] = SyncPoller(
                engine, holder=name, lease_seconds=LEASE_SECONDS, clock=clock
            )
        a, b = pollers["a"], pollers["b"]
        assert first.sync is not None
        inbound = first.sync.inbound

        def slow(connector_id: str, ticket: Any, **kw: Any) -> Any:
            clock.advance(LEASE_SECONDS / 3)  # the ServiceNow poll outlasts the Jira lease
            b.tick()
            return inbound(connector_id, ticket, **kw)

        first.sync.inbound = slow  # type: ignore[method-assign]
        a.tick()
        # b took the Jira lease while a polled ServiceNow: a does not poll Jira after.
        assert ("b", JIRA) in polls and ("a", JIRA) not in polls
        assert [c for n, c in polls if n == "a"] == [SN]
    finally:
        second.close()
        first.close()
