"""The rate limiter's port, its answer, and the in-process sliding window.

A sliding window log: a key may make ``limit`` requests in any ``window`` seconds.
Unlike fixed windows it does not let twice the limit through around a boundary.
The in-process limiter counts per process; with IM_REDIS_URL every server process
shares one count (:mod:`incidents.store.redis_limiter`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a request may go ahead; if not, in how many seconds it may be retried."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """Whole seconds for ``Retry-After`` (at least 1)."""
        return str(max(1, math.ceil(self.retry_after)))


ALLOW = Verdict(True, 0, 0)


class RateLimiter(Protocol):
    """Counts requests per key over a sliding window."""

    async def hit(self, key: str, limit: int, window: float) -> Verdict:
        """Count one request for ``key``; refused when ``limit`` were made within the
        last ``window`` seconds (a refused request is not counted)."""
        ...

    async def close(self) -> None: ...


class InProcessLimiter:
    """The sliding window log in this process's memory."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self._clock = clock
        self._log: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    async def hit(self, key: str, limit: int, window: float) -> Verdict:
        return self.hit_now(key, limit, window)

    def hit_now(self, key: str, limit: int, window: float) -> Verdict:
        """:meth:`hit`, synchronously (it never waits on I/O)."""
        now = self._clock()
        with self._lock:
            log = self._log.get(key)
            if log is None:
                if len(self._log) >= self._max_keys:
                    self._evict(now, window)
                log = self._log[key] = deque()
            while log and log[0] <= now - window:
                log.popleft()
            if len(log) >= limit:
                return Verdict(False, limit, 0, log[0] + window - now)
            log.append(now)
            return Verdict(True, limit, limit - len(log))

    def _evict(self, now: float, window: float) -> None:
        # Keys whose whole log has expired hold no information: drop them.
        for stale in [k for k, log in self._log.items() if not log or log[-1] <= now - window]:
            del self._log[stale]

    async def close(self) -> None:
        return None
