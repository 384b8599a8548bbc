"""The incident as the API and CLI show it: one JSON document per incident."""

from __future__ import annotations

from typing import Any

from incidents.events.timeformat import format_micros
from incidents.orchestrator.incident import Incident
from incidents.orchestrator.lifecycle import TRANSITIONS, Status

# Milestones shown as RFC 3339 times, by document key and incident attribute.
_TIMES = (
    ("declared_at", "declared_us"),
    ("acknowledged_at", "acknowledged_us"),
    ("mitigated_at", "mitigated_us"),
    ("resolved_at", "resolved_us"),
    ("closed_at", "closed_us"),
    ("canceled_at", "canceled_us"),
    ("updated_at", "updated_us"),
)


def _time(micros: int | None) -> str | None:
    return None if micros is None else format_micros(micros)


def incident_document(incident: Incident) -> dict[str, Any]:
    """The incident's public shape: fields, milestones, figures and the allowed moves."""
    doc: dict[str, Any] = {
        "id": incident.id,
        "number": incident.number,
        "title": incident.title,
        "description": incident.description,
        "status": incident.status,
        "severity": incident.severity,
        "tier": incident.tier,
        "service": incident.service,
        "classification": incident.classification,
        "commander": incident.commander,
        "roles": dict(incident.roles),
        "assignees": list(incident.assignees),
        "labels": dict(incident.labels),
        "declared_by": incident.declared_by,
        "acknowledged_by": incident.acknowledged_by,
        "parent_id": incident.parent_id,
        "related": list(incident.related),
        "merged_into": incident.merged_into,
        "merged_from": list(incident.merged_from),
        "alerts": {"total": incident.alert_count, "firing": incident.firing_alerts},
        "notes": incident.note_count,
        "allowed_transitions": [s.value for s in TRANSITIONS[Status(incident.status)]],
        "last_position": incident.last_position,
    }
    for key, attribute in _TIMES:
        doc[key] = _time(getattr(incident, attribute))
    doc.update(incident.figures())
    return doc
