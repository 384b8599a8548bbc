"""One poller per connector across server processes: a lease in the database, taken
with an expiry, renewed while polling and taken over once it expires (both backends).
The pollers run on a driven clock: nothing here waits for time to pass."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from incidents.app import Container
from incidents.events.timeformat import now_micros
from incidents.integrations.sync_poller import SyncPoller
from tests.contract.sync_support import SN, sn_entry, sync_container
from tests.fakes.servicenow import FakeServiceNow

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


def counted(container: Container, name: str, polls: list[str], clock: Clock) -> SyncPoller:
    """A poller over ``container``'s engine whose polls are recorded under ``name``."""
    engine = container.sync
    assert engine is not None
    poll = engine.poll

    def recorded(connector_id: str) -> int:
        polls.append(name)
        return poll(connector_id)

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

    first, second = two_servers
    assert first.sync is not None and second.sync is not None
    stores = [first.sync.store, second.sync.store]
    now = now_micros()
    for round_start in (now, now + 60_000_000):  # a free lease, then an expired one

        def take(i: int, at: int = round_start) -> bool:
            return stores[i % 2].take_poll_lease(SN, f"p{i}", at, at + 30_000_000)

        with ThreadPoolExecutor(max_workers=6) as pool:
            won = list(pool.map(take, range(6)))
        assert won.count(True) == 1
