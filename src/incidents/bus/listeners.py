"""Fan-out to this process's listeners, and an async iterator over it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator

from incidents.bus.message import BusMessage, Listener

log = logging.getLogger(__name__)


class Listeners:
    """A thread-safe set of listeners; one failing listener does not stop the others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[int, Listener] = {}
        self._next = 0

    def add(self, listener: Listener) -> ListenerHandle:
        with self._lock:
            key = self._next
            self._next += 1
            self._listeners[key] = listener
        return ListenerHandle(self, key)

    def remove(self, key: int) -> None:
        with self._lock:
            self._listeners.pop(key, None)

    def __len__(self) -> int:
        return len(self._listeners)

    def dispatch(self, message: BusMessage) -> None:
        with self._lock:
            targets = list(self._listeners.values())
        for listener in targets:
            try:
                listener(message)
            except Exception:
                log.exception("bus listener failed on event %s", message.event_id)


class ListenerHandle:
    """The :class:`~incidents.bus.message.Subscription` of one listener."""

    def __init__(self, owner: Listeners, key: int) -> None:
        self._owner = owner
        self._key = key

    def close(self) -> None:
        self._owner.remove(self._key)


class MessageQueue:
    """Bus messages as an async iterator on one event loop (for streaming endpoints).

    Register :meth:`put` as a listener from the loop that iterates; messages arriving
    on bus threads are handed over with ``call_soon_threadsafe``. A reader that falls
    more than ``maxsize`` messages behind loses the oldest (it should then resume
    from the log by position).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int = 10_000) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[BusMessage] = asyncio.Queue(maxsize)
        self.dropped = 0

    def put(self, message: BusMessage) -> None:
        """The listener: callable from any thread."""
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._loop.call_soon_threadsafe(self._put, message)

    def _put(self, message: BusMessage) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(message)

    def __aiter__(self) -> AsyncIterator[BusMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[BusMessage]:
        while True:
            yield await self._queue.get()
