"""The live feed: follows the log's head and fans new events out to stream subscribers.

One pump per process reads each new stretch of the log once and hands it to every
subscriber; a subscriber filters and renders for its own reader. A subscriber that
resumes (``Last-Event-ID``) first reads the stretch it missed from the database, up
to the position the pump had reached when it subscribed, then takes the pump's
batches from there: no gap and no duplicate, however long it was away.

Positions are handed out under the log's write lock and committed in that order, so
the events visible at any moment are always a prefix of the log: reading "after the
last position seen" never skips an event that commits later.

The pump wakes when this process commits (the appender calls :meth:`LiveFeed.wake`),
when the bus reports an event appended elsewhere, and at the latest every
``poll_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from starlette.concurrency import run_in_threadpool

from incidents.log.ports import EventLog
from incidents.log.query import TimelineFilter
from incidents.log.records import StoredEvent

# A subscriber this far behind stops queueing and catches up from the database.
QUEUE_LIMIT = 256
CHUNK = 1000


@lru_cache(maxsize=512)
def _type_pattern(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(fnmatch.translate(p) for p in patterns))


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """Which events one subscriber receives."""

    types: tuple[str, ...] = ()
    incident_id: str | None = None
    # The reader's visible classifications; None means no restriction.
    visibilities: frozenset[str] | None = None

    def as_timeline_filter(self) -> TimelineFilter:
        return TimelineFilter(
            incident_id=self.incident_id, types=self.types, visibilities=self.visibilities
        )

    def matches(self, row: StoredEvent) -> bool:
        """The same selection :meth:`as_timeline_filter` makes in SQL."""
        if self.incident_id is not None and row.incident_id != self.incident_id:
            return False
        if self.visibilities is not None and (row.visibility or "public") not in self.visibilities:
            return False
        return not self.types or _type_pattern(self.types).fullmatch(row.type) is not None


@dataclass(eq=False)
class Subscription:
    """One stream's place in the log; :meth:`next` yields what it should send next."""

    feed: LiveFeed
    filter: StreamFilter
    # The last position examined: everything up to it was sent or filtered out.
    examined: int
    # Positions up to this come from the database; after it, from the pump.
    live_from: int
    queue: asyncio.Queue[list[StoredEvent]] = field(default_factory=asyncio.Queue)

    def fall_behind(self, cursor: int) -> None:
        """Too slow for the pump: drop the queue, read up to ``cursor`` from the database."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.live_from = cursor

    async def next(self, idle_seconds: float) -> list[StoredEvent] | None:
        """The next events to send, in position order; None after ``idle_seconds`` idle."""
        deadline = asyncio.get_running_loop().time() + idle_seconds
        while True:
            if self.examined < self.live_from:
                # live_from may move while the read runs (fall_behind): read up to, and
                # mark as examined, only what this read covered.
                up_to = self.live_from
                rows = await run_in_threadpool(
                    self.feed.reader.after_position,
                    self.examined,
                    self.filter.as_timeline_filter(),
                    CHUNK,
                    up_to,
                )
                self.examined = rows[-1].position if len(rows) == CHUNK else up_to
                if rows:
                    return rows
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            try:
                batch = await asyncio.wait_for(self.queue.get(), remaining)
            except TimeoutError:
                return None
            if self.examined < self.live_from:
                continue  # fell behind while waiting: this batch is in the database range
            rows = [r for r in batch if r.position > self.examined and self.filter.matches(r)]
            self.examined = max(self.examined, batch[-1].position)
            if rows:
                return rows

    def close(self) -> None:
        self.feed.unsubscribe(self)


class LiveFeed:
    """Follows the log for this process's streams."""

    def __init__(self, reader: EventLog, poll_seconds: float = 1.0) -> None:
        self.reader = reader
        self._poll = poll_seconds
        self._subscribers: set[Subscription] = set()
        self._cursor = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._woken: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # Called with each batch the pump reads (metrics, tests).
        self.on_batch: Callable[[list[StoredEvent]], None] | None = None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def wake(self) -> None:
        """New events may be committed (thread-safe; cheap when nobody listens)."""
        loop, woken = self._loop, self._woken
        if self._subscribers and loop is not None and woken is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(woken.set)

    async def _start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._loop = asyncio.get_running_loop()
        self._woken = asyncio.Event()
        self._task = asyncio.create_task(self._pump(), name="live-feed")

    async def subscribe(self, filt: StreamFilter, after: int | None) -> Subscription:
        """A subscription from position ``after`` (None: from now on)."""
        await self._start()
        if not self._subscribers:
            # The pump idles while nobody listens: start from the head as it is now.
            self._cursor = await run_in_threadpool(self.reader.head_position)
        cursor = self._cursor
        examined = cursor if after is None else after
        sub = Subscription(self, filt, examined=examined, live_from=max(cursor, 0))
        if examined >= cursor:
            sub.live_from = examined
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    async def _pump(self) -> None:
        assert self._woken is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self._poll)
            self._woken.clear()
            if not self._subscribers:
                continue
            try:
                await self._drain()
            except Exception:  # the database is restarting: the next wake retries
                await asyncio.sleep(self._poll)

    async def _drain(self) -> None:
        everything = TimelineFilter()
        while True:
            rows = await run_in_threadpool(
                self.reader.after_position, self._cursor, everything, CHUNK
            )
            if not rows:
                return
            self._cursor = rows[-1].position
            # Most streams follow one incident: hand each only its incident's rows
            # instead of making every one of them filter the whole batch.
            by_incident: dict[str | None, list[StoredEvent]] | None = None
            for sub in list(self._subscribers):
                if sub.examined >= self._cursor:
                    continue
                batch = rows
                if sub.filter.incident_id is not None:
                    if by_incident is None:
                        by_incident = {}
                        for row in rows:
                            by_incident.setdefault(row.incident_id, []).append(row)
                    batch = by_incident.get(sub.filter.incident_id, [])
                    if not batch:
                        continue
                if sub.queue.qsize() >= QUEUE_LIMIT:
                    sub.fall_behind(self._cursor)
                else:
                    sub.queue.put_nowait(batch)
            if self.on_batch is not None:
                self.on_batch(rows)
            if len(rows) < CHUNK:
                return

    async def close(self) -> None:
        """Stop the pump (streams end on their own when the server shuts down)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = None
