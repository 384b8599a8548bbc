"""The retention tiers and the rule that puts an incident in one.

Active incidents keep full access. A finished incident (closed or canceled) is
*recent* for ``archive_after`` after it finished, then *archived* (read-only,
compressed) until ``purge_after``, then purged. A chain of events that no incident
record describes (events appended straight to the timeline) ages from its last event.
An incident on legal hold is never archived or purged, whatever its age.

Events of no incident (alerts that never joined one, events appended without a
subject) form one chain of their own. They are kept in full, never archived, and
purged from the start of that chain once older than ``unattached_purge_after_days``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DAY_US = 86_400 * 1_000_000
# Statuses after which an incident starts to age.
FINISHED = frozenset({"closed", "canceled"})


class Tier(StrEnum):
    ACTIVE = "active"
    RECENT = "recent"
    ARCHIVED = "archived"
    PURGED = "purged"


class Action(StrEnum):
    """What a retention run does to an incident."""

    KEEP = "keep"
    ARCHIVE = "archive"
    PURGE = "purge"


@dataclass(frozen=True, slots=True)
class Periods:
    """How long a finished incident stays in each tier (days)."""

    archive_after_days: float = 90.0
    purge_after_days: float = 7 * 365.0
    # Events of no incident: purged this long after their time.
    unattached_purge_after_days: float = 7 * 365.0

    def __post_init__(self) -> None:
        if (
            min(self.archive_after_days, self.purge_after_days, self.unattached_purge_after_days)
            < 0
        ):
            raise ValueError("retention periods must not be negative")
        if self.purge_after_days < self.archive_after_days:
            raise ValueError(
                "retention_purge_after_days must be at least retention_archive_after_days"
            )


@dataclass(frozen=True, slots=True)
class Candidate:
    """What retention needs to know about one incident's chain."""

    incident_id: str
    # The incident's status from its record; None for a chain no incident describes.
    status: str | None
    # When the incident finished (or, without a record, its last event's time).
    finished_us: int | None
    held: bool
    archived: bool
    events: int


@dataclass(frozen=True, slots=True)
class UnattachedPlan:
    """What a run does to the events of no incident: purge ``events`` of them, the start
    of their chain up to ``through_position``, all older than the period."""

    events: int
    through_position: int | None
    rule: str
    reason: str


def unattached_rule(periods: Periods) -> str:
    """The rule unattached events are purged under (recorded in their tombstones)."""
    return f"unattached-purge-after-{periods.unattached_purge_after_days:g}d"


def unattached_cutoff(now_us: int, periods: Periods) -> int:
    """Events of no incident whose time is before this are due."""
    return now_us - int(periods.unattached_purge_after_days * DAY_US)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The tier an incident is in, what a run does to it, and why (for the dry run)."""

    incident_id: str
    tier: Tier
    action: Action
    rule: str
    reason: str


def classify(candidate: Candidate, now_us: int, periods: Periods) -> Verdict:
    """The verdict for ``candidate`` at ``now_us``."""
    cid = candidate.incident_id
    finished = candidate.finished_us
    if (candidate.status is not None and candidate.status not in FINISHED) or finished is None:
        status = candidate.status or "open"
        return Verdict(cid, Tier.ACTIVE, Action.KEEP, "active", f"the incident is {status}")
    age_days = (now_us - finished) / DAY_US
    held = candidate.held
    if age_days >= periods.purge_after_days:
        if held:
            return Verdict(
                cid,
                Tier.ARCHIVED if candidate.archived else Tier.RECENT,
                Action.KEEP,
                "legal-hold",
                f"finished {age_days:.0f} days ago, past the purge period, but on legal hold",
            )
        return Verdict(
            cid,
            Tier.PURGED,
            Action.PURGE,
            f"purge-after-{periods.purge_after_days:g}d",
            f"finished {age_days:.0f} days ago (purge after {periods.purge_after_days:g})",
        )
    if age_days >= periods.archive_after_days:
        if candidate.archived:
            return Verdict(cid, Tier.ARCHIVED, Action.KEEP, "archived", "already archived")
        if held:
            return Verdict(
                cid,
                Tier.RECENT,
                Action.KEEP,
                "legal-hold",
                f"finished {age_days:.0f} days ago, past the archive period, but on legal hold",
            )
        return Verdict(
            cid,
            Tier.ARCHIVED,
            Action.ARCHIVE,
            f"archive-after-{periods.archive_after_days:g}d",
            f"finished {age_days:.0f} days ago (archive after {periods.archive_after_days:g})",
        )
    return Verdict(
        cid,
        Tier.ARCHIVED if candidate.archived else Tier.RECENT,
        Action.KEEP,
        "recent",
        f"finished {age_days:.0f} days ago",
    )
