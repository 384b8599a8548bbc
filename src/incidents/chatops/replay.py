"""Refusing replayed requests: a signed request is accepted once within its window."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class ReplayGuard:
    """Remembers signatures seen in the last ``window`` seconds.

    A signature covers the timestamp and the body, so a captured request replayed
    within the freshness window carries the same signature and is refused; after the
    window the timestamp check refuses it anyway, so older entries can be forgotten.
    """

    def __init__(self, window: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_time(self, signature: str) -> bool:
        """True the first time ``signature`` is presented within the window."""
        now = self._clock()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            expires = self._seen.get(signature)
            if expires is not None and expires > now:
                return False
            # Twice the window: the timestamp may be up to `window` in the future too.
            self._seen[signature] = now + 2 * self._window
            return True
