"""What one committed append transaction did, for the metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GroupStats:
    """How one committed group went: what it wrote, and its time with the log lock.

    Every writer of every server process takes the one log lock; the time it is held
    bounds how many events a database can take, however many processes append.
    """

    submissions: int
    # Events stored (duplicates not counted).
    events: int
    # From asking for the log lock to holding it.
    lock_wait_seconds: float
    # From holding the log lock to the end of the commit, which releases it.
    lock_held_seconds: float
