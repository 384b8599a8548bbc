"""The incident as the API and CLI show it: one JSON document per incident."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from incidents.events.timeformat import format_micros
from incidents.incident.aggregate import Incident
from incidents.incident.lifecycle import TRANSITIONS, Status

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


def relatives(incident: Incident) -> set[str]:
    """The ids of the incidents the document names: parent, related and merges."""
    named = {*incident.related, *incident.merged_from}
    named.update(i for i in (incident.parent_id, incident.merged_into) if i is not None)
    return named


def incident_document(incident: Incident, hidden: Set[str] = frozenset()) -> dict[str, Any]:
    """The incident's public shape: fields, milestones, figures and the allowed moves.

    Relatives in ``hidden`` (incidents the reader may not see) are left out, so that a
    document does not disclose that they exist.
    """

    def shown(incident_id: str | None) -> str | None:
        return None if incident_id in hidden else incident_id

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
        "parent_id": shown(incident.parent_id),
        "related": [i for i in incident.related if i not in hidden],
        "merged_into": shown(incident.merged_into),
        "merged_from": [i for i in incident.merged_from if i not in hidden],
        "alerts": {"total": incident.alert_count, "firing": incident.firing_alerts},
        "notes": incident.note_count,
        "allowed_transitions": [s.value for s in TRANSITIONS[Status(incident.status)]],
        "last_position": incident.last_position,
    }
    for key, attribute in _TIMES:
        doc[key] = _time(getattr(incident, attribute))
    doc.update(incident.figures())
    return doc
