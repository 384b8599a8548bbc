"""Legal holds, recorded as timeline events of the incident they hold.

``im.retention.hold.place`` puts an incident on hold, ``im.retention.hold.release``
takes it off; the last of them decides. The reason and who acted are in the event.
"""

from __future__ import annotations

from dataclasses import dataclass

PLACE = "im.retention.hold.place"
RELEASE = "im.retention.hold.release"
HOLD_TYPES = (PLACE, RELEASE)
RETENTION_SOURCE = "incidents://retention"
MAX_REASON = 2000
# The data class of a hold's reason (readers need legal_hold_access to see it).
LEGAL_HOLD_CLASS = "legal_hold"


@dataclass(frozen=True, slots=True)
class Hold:
    """An incident on legal hold: why, by whom, since when."""

    incident_id: str
    reason: str
    placed_by: str
    placed_us: int
    position: int


class HoldError(ValueError):
    """A hold request that cannot be carried out (the message says why)."""

    def __init__(self, detail: str, *, conflict: bool = False, field: str | None = None) -> None:
        self.conflict = conflict
        self.field = field
        super().__init__(detail)


def check_reason(reason: object) -> str:
    """The reason, trimmed; a hold must say why."""
    if not isinstance(reason, str) or not reason.strip():
        raise HoldError("reason: a legal hold needs a reason", field="reason")
    text = reason.strip()
    if len(text) > MAX_REASON:
        raise HoldError(f"reason: at most {MAX_REASON} characters", field="reason")
    return text
