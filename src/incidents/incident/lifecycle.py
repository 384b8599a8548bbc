"""The incident state machine: statuses, the moves between them, and their event types.

The overview's machine is Draft (optional) -> Open -> Mitigated -> Resolved -> Closed,
with Open -> Canceled. Practice adds reopening (Mitigated or Resolved back to Open)
and dropping a draft (Draft -> Canceled).
"""

from __future__ import annotations

from enum import StrEnum

from incidents.log.commands import Rejected


class Status(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELED = "canceled"


TRANSITIONS: dict[Status, tuple[Status, ...]] = {
    Status.DRAFT: (Status.OPEN, Status.CANCELED),
    Status.OPEN: (Status.MITIGATED, Status.RESOLVED, Status.CANCELED),
    Status.MITIGATED: (Status.RESOLVED, Status.OPEN),
    Status.RESOLVED: (Status.CLOSED, Status.OPEN),
    Status.CLOSED: (),
    Status.CANCELED: (),
}

# Statuses in which an incident is still being worked on (and absorbs new alerts).
ACTIVE = frozenset({Status.DRAFT, Status.OPEN, Status.MITIGATED})

# The event type recorded for a move into each status.
_TYPE_FOR_TARGET = {
    Status.MITIGATED: "im.incident.mitigate",
    Status.RESOLVED: "im.incident.resolve",
    Status.CLOSED: "im.incident.close",
    Status.CANCELED: "im.incident.cancel",
}

# Event types that move an incident, and where to when the event does not say.
STATUS_EVENT_TARGETS: dict[str, Status | None] = {
    "im.incident.state_change": None,
    "im.incident.mitigate": Status.MITIGATED,
    "im.incident.resolve": Status.RESOLVED,
    "im.incident.close": Status.CLOSED,
    "im.incident.cancel": Status.CANCELED,
    "im.incident.reopen": Status.OPEN,
}

SEVERITIES = ("SEV-1", "SEV-2", "SEV-3", "SEV-4")


class InvalidTransition(Rejected):
    """A move the state machine does not allow; names the moves that are allowed."""

    def __init__(self, incident_id: str, current: Status, target: Status) -> None:
        self.current = current
        self.target = target
        self.allowed = [s.value for s in TRANSITIONS[current]]
        allowed = ", ".join(self.allowed) or "none (the incident is final)"
        super().__init__(
            f"{incident_id} is {current.value}; it cannot move to {target.value}. "
            f"Allowed from {current.value}: {allowed}"
        )


def parse_status(value: object) -> Status | None:
    """The status a client named, case-insensitively; None if it names none."""
    if not isinstance(value, str):
        return None
    try:
        return Status(value.strip().lower())
    except ValueError:
        return None


def can_move(current: Status, target: Status) -> bool:
    return target in TRANSITIONS[current]


def event_type_for(current: Status, target: Status) -> str:
    """The event type that records a move: resolve, close, reopen, ... or state_change."""
    if target is Status.OPEN and current in (Status.MITIGATED, Status.RESOLVED):
        return "im.incident.reopen"
    return _TYPE_FOR_TARGET.get(target, "im.incident.state_change")


def parse_severity(value: object) -> str | None:
    """``SEV-2``, ``sev2``, ``2`` -> ``SEV-2``; None if it is not a severity."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip().upper().replace("SEV-", "").replace("SEV", "")
    else:
        return None
    candidate = f"SEV-{text}"
    return candidate if candidate in SEVERITIES else None


def severity_rank(severity: str) -> int:
    """1 for SEV-1 (the most severe) ... 4 for SEV-4."""
    return int(severity.removeprefix("SEV-"))
