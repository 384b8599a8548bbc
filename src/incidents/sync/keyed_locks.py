"""A lock per key that exists only while someone holds or waits for it.

The sync engine serialises the work on one incident's ticket (a delivery, a webhook,
a poll); keeping a lock for every incident ever synced would grow without end, so an
entry is dropped when its last user leaves.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager


class KeyedLocks:
    """Mutual exclusion per key, with no entry left for keys nobody uses."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        # key -> (its lock, how many threads hold or wait for it)
        self._locks: dict[Hashable, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        """Hold ``key``'s lock for the ``with`` block."""
        with self._guard:
            lock, users = self._locks.get(key) or (threading.Lock(), 0)
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        """Keys in use now (held or waited for)."""
        with self._guard:
            return len(self._locks)
