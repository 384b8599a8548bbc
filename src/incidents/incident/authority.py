"""Which permission an incident-changing event needs when a client appends it directly.

Incidents follow their timelines, so an ``im.incident.*`` CloudEvent posted to the
timeline changes the incident exactly as the matching REST call would. It therefore
needs the same role: appending to the timeline alone does not let a caller declare,
reclassify or close incidents.
"""

from __future__ import annotations

from typing import Any

from incidents.incident.aggregate import INCIDENT_TYPES
from incidents.incident.lifecycle import Status, parse_status
from incidents.policy.model import Action

# Ending an incident, or folding it into another, is the commander's call.
_CLOSING = frozenset({"im.incident.close", "im.incident.merge"})
# Notes only add to the timeline; they are the timeline writer's own business.
_TIMELINE_ONLY = frozenset({"im.note.add"})


def action_for(event_type: str, data: Any) -> Action | None:
    """The incident action an appended event needs besides ``timeline.append``, if any."""
    if event_type not in INCIDENT_TYPES or event_type in _TIMELINE_ONLY:
        return None
    if event_type in _CLOSING:
        return Action.INCIDENT_CLOSE
    closing = isinstance(data, dict) and parse_status(data.get("new_status")) is Status.CLOSED
    if event_type == "im.incident.state_change" and closing:
        return Action.INCIDENT_CLOSE
    return Action.INCIDENT_WRITE
