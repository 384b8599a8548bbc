"""The NATS JetStream bus against the machine's NATS server (127.0.0.1:4222).

Each test uses a stream and subject prefix of its own and deletes the stream after.
Without a reachable server the tests are skipped, unless IM_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import nats
import pytest

from incidents.app import Container, build_container
from incidents.bus.destination import BusDestination
from incidents.bus.jetstream import MSG_ID, NatsBus
from incidents.bus.message import BusMessage
from incidents.bus.relay import OutboxRelay
from incidents.events.envelope import normalize
from incidents.log.session import PendingEvent
from incidents.store.outbox_store import OutboxRecord, OutboxStore
from tests.conftest import REQUIRE_SERVICES, event, make_settings

NATS_URL = os.environ.get("IM_TEST_NATS", "nats://127.0.0.1:4222")


async def _probe() -> None:
    nc = await nats.connect(NATS_URL, connect_timeout=3, max_reconnect_attempts=0)
    try:
        await nc.jetstream().account_info()
    finally:
        await nc.close()


def require_nats() -> None:
    try:
        asyncio.run(_probe())
    except Exception as exc:
        problem = f"NATS JetStream at {NATS_URL} is not reachable: {exc!r}"
        if REQUIRE_SERVICES:
            pytest.fail(f"{problem} (IM_REQUIRE_SERVICES=1)")
        pytest.skip(problem)


@dataclass
class Stream:
    name: str
    prefix: str

    def settings(self, database_url: str, consumer: str, **overrides: Any) -> Any:
        return make_settings(
            database_url,
            nats_url=NATS_URL,
            nats_stream=self.name,
            nats_subject_prefix=self.prefix,
            nats_consumer=consumer,
            **overrides,
        )


async def _stream_messages(name: str) -> int:
    nc = await nats.connect(NATS_URL)
    try:
        info = await nc.jetstream().stream_info(name)
        return int(info.state.messages)
    finally:
        await nc.close()


async def _delete_stream(name: str) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(name)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


@pytest.fixture
def stream() -> Iterator[Stream]:
    require_nats()
    tag = uuid.uuid4().hex[:10]
    yield Stream(f"TEST_{tag}", f"test_{tag}.events")
    asyncio.run(_delete_stream(f"TEST_{tag}"))


def append(c: Container, *events: dict[str, Any]) -> list[Any]:
    pending = [PendingEvent(normalize(e), "alice@example.com") for e in events]
    return c.appender.submit(pending).result(timeout=30)


def test_appended_event_is_published_on_its_type_subject(database_url: str, stream: Stream) -> None:
    c = build_container(stream.settings(database_url, "instance-a"))
    c.start()
    try:
        assert isinstance(c.bus, NatsBus)

        async def scenario() -> Any:
            nc = await nats.connect(NATS_URL)
            try:
                sub = await nc.subscribe(f"{stream.prefix}.im.incident.declare")
                await nc.flush()
                await asyncio.to_thread(append, c, event(1, type_="im.incident.declare"))
                return await sub.next_msg(timeout=30)
            finally:
                await nc.close()

        msg = asyncio.run(scenario())
        assert msg.subject == f"{stream.prefix}.im.incident.declare"
        assert msg.headers is not None
        assert msg.headers[MSG_ID] == "evt-1"
        body = msg.data.decode()
        assert '"specversion":"1.0"' in body
        assert '"id":"evt-1"' in body
    finally:
        c.close()


def test_event_appended_on_one_instance_reaches_the_other(
    postgres_url: str, stream: Stream
) -> None:
    first = build_container(stream.settings(postgres_url, "instance-a"))
    # The second instance serves streams only; the first delivers the outbox.
    second = build_container(stream.settings(postgres_url, "instance-b", outbox_relay=False))
    first.start()
    second.start()
    try:
        received: list[BusMessage] = []
        arrived = threading.Event()

        def listener(message: BusMessage) -> None:
            received.append(message)
            arrived.set()

        second.bus.subscribe(listener)
        (result,) = append(first, event(3, type_="im.note.add"))
        assert arrived.wait(30)
        assert [(m.event_id, m.type, m.position) for m in received] == [
            ("evt-3", "im.note.add", result.position)
        ]
    finally:
        second.close()
        first.close()


def test_republication_is_absorbed_by_the_duplicate_window(stream: Stream) -> None:
    bus = NatsBus(NATS_URL, stream=stream.name, subject_prefix=stream.prefix, consumer=None)
    bus.start()
    try:
        message = BusMessage(b'{"id":"evt-1"}', "evt-1", "im.incident.declare", 1)
        bus.publish(message)
        bus.publish(message)
        assert bus.publish_many([message, message]) == [None, None]
    finally:
        bus.close()
    assert asyncio.run(_stream_messages(stream.name)) == 1


def test_relay_restart_after_crash_is_exactly_once_on_the_stream(
    postgres_url: str, stream: Stream
) -> None:
    c = build_container(stream.settings(postgres_url, "instance-a", outbox_relay=False))
    c.start()
    try:
        append(c, *(event(n) for n in range(1, 11)))

        class Killed(BaseException):
            """Stands for the process dying after publishing, before marking."""

        class PublishThenDie(BusDestination):
            def deliver(self, rows: Sequence[OutboxRecord]) -> list[Exception | None]:
                super().deliver(rows)
                raise Killed

        store = OutboxStore(c.engine, c.backend)
        with pytest.raises(Killed):
            OutboxRelay(store, [PublishThenDie(c.bus)]).run_once()
        assert asyncio.run(_stream_messages(stream.name)) == 10
        # The restarted relay publishes all ten again; the stream keeps one of each.
        assert OutboxRelay(store, [BusDestination(c.bus)]).drain() == 10
        assert asyncio.run(_stream_messages(stream.name)) == 10
    finally:
        c.close()
