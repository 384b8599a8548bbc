"""The in-process sliding window: never more than the limit in any window."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from incidents.ratelimit.limiter import InProcessLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@given(
    gaps=st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), min_size=1, max_size=200),
    limit=st.integers(min_value=1, max_value=10),
)
def test_no_window_ever_admits_more_than_the_limit(gaps: list[float], limit: int) -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    window = 5.0
    admitted: list[float] = []
    for gap in gaps:
        clock.now += gap
        verdict = limiter.hit_now("k", limit, window)
        recent = [t for t in admitted if t > clock.now - window]
        # Admitted exactly when fewer than `limit` were admitted in the last window.
        assert verdict.allowed == (len(recent) < limit)
        if verdict.allowed:
            admitted.append(clock.now)
            assert verdict.remaining == limit - len(recent) - 1
        else:
            # Retrying after retry_after succeeds: the oldest request has left the window.
            assert 0 < verdict.retry_after <= window
            assert min(recent) + window - clock.now == verdict.retry_after


def test_keys_are_counted_apart_and_stale_keys_are_evicted() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock, max_keys=2)
    assert limiter.hit_now("a", 1, 1.0).allowed
    assert not limiter.hit_now("a", 1, 1.0).allowed
    assert limiter.hit_now("b", 1, 1.0).allowed
    clock.now += 2
    assert limiter.hit_now("c", 1, 1.0).allowed  # a and b expired: evicted, not refused
    assert limiter.hit_now("a", 1, 1.0).allowed
