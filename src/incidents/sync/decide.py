"""The one rule that settles a field: three values (ours, theirs, the last synced
base), the field's owner and policy -> push, pull, settle, or queue a conflict.

Outbound delivery, inbound polling, webhooks and reconciliation all decide through
here, so they cannot disagree; the convergence property test drives it directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from incidents.sync.mapping import FieldMapping, Owner, Policy


class Verdict(StrEnum):
    NONE = "none"  # both sides agree with the base: nothing to do
    SETTLE = "settle"  # both sides agree, the base is stale: record it
    PUSH = "push"  # write ours to the ticket
    PULL = "pull"  # apply theirs to the incident
    CONFLICT = "conflict"  # a human decides (the conflict queue)


@dataclass(frozen=True, slots=True)
class FieldState:
    """One field's three values, with when each side last changed."""

    ours: str | None
    theirs: str | None
    base: str | None
    ours_us: int = 0
    theirs_us: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str = ""


# Whether the incident may take this value (the state machine's guard for status).
Guard = Callable[[str | None], bool]


def _always(_value: str | None) -> bool:
    return True


def decide(mapping: FieldMapping, state: FieldState, allowed: Guard = _always) -> Decision:
    """What to do with one field."""
    ours, theirs, base = state.ours, state.theirs, state.base
    if ours == theirs:
        return Decision(Verdict.NONE if base == ours else Verdict.SETTLE)
    ours_changed = ours != base
    theirs_changed = theirs != base

    def pull(reason: str) -> Decision:
        if theirs is None and mapping.internal_field in ("title", "severity", "status"):
            # A required incident field cannot be emptied from the ticket.
            return Decision(Verdict.PUSH if mapping.pushes else Verdict.NONE, "empty upstream")
        if not allowed(theirs):
            return Decision(
                Verdict.CONFLICT, f"the incident's state machine refuses {theirs!r} ({reason})"
            )
        return Decision(Verdict.PULL, reason)

    if not theirs_changed:
        # Only we changed it (or the ticket never had it).
        if mapping.owner is Owner.EXTERNAL:
            return pull("the ticket owns the field")
        return Decision(Verdict.PUSH, "changed here")
    if not ours_changed:
        if mapping.owner is Owner.INTERNAL:
            return Decision(Verdict.PUSH, "the incident owns the field")
        return pull("changed on the ticket")
    # Both changed, to different values.
    if mapping.owner is Owner.INTERNAL:
        return Decision(Verdict.PUSH, "the incident owns the field")
    if mapping.owner is Owner.EXTERNAL:
        return pull("the ticket owns the field")
    match mapping.policy:
        case Policy.INTERNAL_WINS:
            return Decision(Verdict.PUSH, "internal_wins")
        case Policy.EXTERNAL_WINS:
            return pull("external_wins")
        case Policy.MOST_RECENT_ALLOWED:
            if state.theirs_us > state.ours_us:
                return pull("most_recent_allowed: the ticket's edit is newer")
            return Decision(Verdict.PUSH, "most_recent_allowed: our edit is newer")
        case Policy.STATE_MACHINE:
            return pull("state_machine")
        case Policy.MANUAL:
            return Decision(Verdict.CONFLICT, "manual: both sides changed the field")
    return Decision(Verdict.CONFLICT, "no policy")
