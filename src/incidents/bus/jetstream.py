"""The NATS JetStream bus (``IM_NATS_URL``): events shared by every server instance.

Events are published as structured-mode CloudEvents JSON on ``<prefix>.<type>`` with
``Nats-Msg-Id`` set to the event id, so the stream's duplicate window absorbs a
re-publication (the outbox delivers at least once). Each server instance reads the
stream through a durable consumer of its own: every instance sees every event, and
one that restarts resumes where it stopped.

The NATS client is asyncio; it runs on an event loop thread owned by this adapter,
so synchronous callers (the outbox relay) can publish and listeners are called on
that thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import NotFoundError

from incidents.bus.listeners import Listeners
from incidents.bus.message import (
    DEFAULT_SUBJECT_PREFIX,
    BusMessage,
    Listener,
    Subscription,
    subject_for,
)
from incidents.config import mask_url_password

log = logging.getLogger(__name__)

MSG_ID = "Nats-Msg-Id"
CONSUMER_INACTIVE_SECONDS = 3600.0

# The event's log position and type travel as headers, so a consumer can route and
# resume without parsing the payload.
POSITION_HEADER = "Im-Position"
TYPE_HEADER = "Im-Type"

T = TypeVar("T")


class NatsBus:
    """A :class:`~incidents.bus.message.Bus` on a NATS JetStream stream."""

    def __init__(
        self,
        url: str,
        *,
        stream: str = "INCIDENTS",
        subject_prefix: str = DEFAULT_SUBJECT_PREFIX,
        consumer: str | None = None,
        duplicate_window_seconds: float = 120.0,
        timeout_seconds: float = 5.0,
    ) -> None:
        """``consumer`` names this instance's durable consumer; None publishes only."""
        self._url = url
        self._stream = stream
        self._prefix = subject_prefix
        self._consumer = consumer
        self._duplicate_window = duplicate_window_seconds
        self._timeout = timeout_seconds
        self._listeners = Listeners()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def stream(self) -> str:
        return self._stream

    @property
    def subject_prefix(self) -> str:
        return self._prefix

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the NATS bus is not started")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(self._timeout * 2 if timeout is None else timeout)

    def start(self) -> None:
        """Connect, create the stream and this instance's consumer if missing."""
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="nats-bus", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._call(self._connect())
        except BaseException:
            self.close()
            raise

    async def _connect(self) -> None:
        self._nc = await nats.connect(
            self._url,
            name=self._consumer or "incidents",
            connect_timeout=self._timeout,
            max_reconnect_attempts=-1,
            # Errors are logged here, not printed by the client.
            error_cb=self._on_error,
        )
        self._js = self._nc.jetstream(timeout=self._timeout)
        subjects = [f"{self._prefix}.>"]
        try:
            await self._js.stream_info(self._stream)
        except NotFoundError:
            await self._js.add_stream(
                StreamConfig(
                    name=self._stream,
                    subjects=subjects,
                    duplicate_window=self._duplicate_window,
                )
            )
        if self._consumer is not None:
            config = ConsumerConfig(
                durable_name=self._consumer,
                ack_policy=AckPolicy.EXPLICIT,
                # A new instance follows from now on; one that restarts resumes.
                deliver_policy=DeliverPolicy.NEW,
                filter_subject=subjects[0],
                # A consumer nobody has read for an hour (an instance gone for good, a
                # worker process replaced) is removed by the server.
                inactive_threshold=CONSUMER_INACTIVE_SECONDS,
            )
            subscription = await self._js.pull_subscribe(
                subjects[0], durable=self._consumer, stream=self._stream, config=config
            )
            self._reader = asyncio.get_running_loop().create_task(self._read(subscription))

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS: %s", exc)

    async def _read(self, subscription: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                messages = await subscription.fetch(256, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("NATS consumer %s: %s", self._consumer, exc)
                await asyncio.sleep(1.0)
                continue
            for msg in messages:
                self._listeners.dispatch(_message_of(msg, self._prefix))
                await msg.ack()

    def close(self) -> None:
        """Stop reading, drain and disconnect, and stop the loop thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            self._call(self._disconnect(), timeout=self._timeout + 1)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=self._timeout)
        with contextlib.suppress(RuntimeError):
            loop.close()
        self._loop = self._thread = None
        self._nc = self._js = None

    async def _disconnect(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()

    def ping(self) -> None:
        """Raise unless the NATS server answers and the stream exists (for readiness)."""
        self._call(self._ping(), timeout=self._timeout + 1)

    async def _ping(self) -> None:
        nc, js = self._nc, self._js
        if nc is None or js is None:
            raise ConnectionError("the NATS bus is not connected")
        if not nc.is_connected:
            # The client reconnects by itself; until then nothing is published.
            raise ConnectionError(f"disconnected from NATS at {mask_url_password(self._url)}")
        await js.stream_info(self._stream)

    def publish(self, message: BusMessage) -> None:
        error = self.publish_many([message])[0]
        if error is not None:
            raise error

    def publish_many(self, messages: Sequence[BusMessage]) -> list[Exception | None]:
        if not messages:
            return []
        return self._call(self._publish_all(messages))

    async def _publish_all(self, messages: Sequence[BusMessage]) -> list[Exception | None]:
        js = self._js
        if js is None:
            raise RuntimeError("the NATS bus is not connected")
        # Concurrent publishes: one round trip for the batch, not one per event.
        acks = await asyncio.gather(
            *(
                js.publish(
                    subject_for(m.type, self._prefix),
                    m.payload,
                    stream=self._stream,
                    headers={
                        MSG_ID: m.event_id,
                        POSITION_HEADER: str(m.position),
                        TYPE_HEADER: m.type,
                    },
                )
                for m in messages
            ),
            return_exceptions=True,
        )
        results: list[Exception | None] = []
        for ack in acks:
            if isinstance(ack, Exception):
                results.append(ack)
            elif isinstance(ack, BaseException):
                raise ack
            else:
                results.append(None)
        return results

    def subscribe(self, listener: Listener) -> Subscription:
        return self._listeners.add(listener)


def _message_of(msg: Msg, prefix: str) -> BusMessage:
    headers = msg.headers or {}
    try:
        position = int(headers.get(POSITION_HEADER, "0"))
    except ValueError:
        position = 0
    event_type = headers.get(TYPE_HEADER) or msg.subject.removeprefix(f"{prefix}.")
    return BusMessage(msg.data, headers.get(MSG_ID, ""), event_type, position)
