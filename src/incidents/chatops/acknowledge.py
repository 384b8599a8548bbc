"""Acknowledging one alert (``/im ack <alert>``), decided under the log lock.

The alert must be attached to an incident the caller may see (and, when the command
names or implies an incident, to that one). The acknowledgement is an
``im.alert.acknowledge`` event on that incident's timeline, carrying the alert's
current document so the alert keeps its description; its status does not change
(a provider's resolve still ends it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from incidents.incident.commands import (
    CommandConflict,
    CommandResult,
    IncidentNotFound,
    build_event,
    snapshot,
    state_of,
)
from incidents.incident.lifecycle import ACTIVE, Status
from incidents.log.commands import Rejected
from incidents.log.session import AppendSession

CHATOPS_SOURCE = "incidents://chatops"


class AlertNotFound(Rejected):
    """No alert with that key attached to an incident the caller may see."""

    def __init__(self, key: str, incident_id: str | None) -> None:
        self.key = key
        where = f" on {incident_id}" if incident_id else ""
        super().__init__(f"no alert {key!r}{where}")


@dataclass(frozen=True, slots=True)
class AcknowledgeAlert:
    """Record that ``actor`` has an alert in hand."""

    key: str
    actor: str
    # The incident the command is about (named, or its channel's); None: the alert's own.
    incident_id: str | None
    visibilities: frozenset[str] | None

    def execute(self, session: AppendSession) -> CommandResult:
        state = state_of(session)
        record = state.alert(self.key)
        if record is None or record.incident_id is None:
            raise AlertNotFound(self.key, self.incident_id)
        if self.incident_id is not None and record.incident_id != self.incident_id:
            raise AlertNotFound(self.key, self.incident_id)
        incident = state.incident(record.incident_id)
        if incident is None or not incident.visible_to(self.visibilities):
            # Indistinguishable from an alert that does not exist.
            if self.incident_id is not None:
                raise IncidentNotFound(self.incident_id)
            raise AlertNotFound(self.key, None)
        if Status(incident.status) not in ACTIVE:
            raise CommandConflict(
                f"{incident.id} is {incident.status}; its alerts need no acknowledgement"
            )
        alert: dict[str, Any] = {**record.alert, "key": self.key}
        data = {"incident_id": incident.id, "alert": alert, "acknowledged_by": self.actor}
        event = build_event(
            "im.alert.acknowledge",
            incident.id,
            data,
            self.actor,
            source=CHATOPS_SOURCE,
            visibility=incident.classification,
        )
        result = session.emit(event, self.actor)
        after = state.incident(incident.id)
        assert after is not None
        return CommandResult(snapshot(after), [result])
