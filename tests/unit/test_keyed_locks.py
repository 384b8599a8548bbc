"""Per-key locks: mutual exclusion per key, and no entry kept for keys not in use."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from hypothesis import given, settings
from hypothesis import strategies as st

from incidents.sync.keyed_locks import KeyedLocks


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4), min_size=2, max_size=40))
def test_one_holder_per_key_and_nothing_kept_afterwards(keys: list[int]) -> None:
    locks = KeyedLocks()
    inside: dict[int, int] = {}
    most: dict[int, int] = {}
    guard = threading.Lock()

    def work(key: int) -> None:
        with locks.hold(key):
            with guard:
                inside[key] = inside.get(key, 0) + 1
                most[key] = max(most.get(key, 0), inside[key])
            # Stay inside long enough for the other threads on the same key to try
            # to come in: without the lock they would, and be counted.
            time.sleep(0.002)
            with guard:
                inside[key] -= 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, keys))
    assert all(n == 1 for n in most.values())
    assert len(locks) == 0


def test_a_key_waited_for_is_kept_until_its_last_user_leaves() -> None:
    locks = KeyedLocks()
    entered = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with locks.hold("k"):
            entered.set()
            release.wait()

    thread = threading.Thread(target=holder)
    thread.start()
    entered.wait()
    assert len(locks) == 1
    release.set()
    thread.join()
    with locks.hold("k"):
        assert len(locks) == 1
    assert len(locks) == 0
