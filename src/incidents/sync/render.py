"""What a connector may see of an incident: the policy decision and the redaction
function for the connector's own service identity, as for any reader."""

from __future__ import annotations

from typing import Any

from incidents.incident.aggregate import Incident
from incidents.incident.document import incident_document
from incidents.policy.model import Action, Decision
from incidents.policy.redaction import redact_body

Values = dict[str, str | None]


def visible_values(incident: Incident, decision: Decision) -> Values | None:
    """The incident's synced fields as the connector may read them; None when the
    incident's classification is closed to it (nothing is written to a ticket)."""
    if not decision.allows(Action.INCIDENT_READ):
        return None
    if incident.classification not in decision.visibilities:
        return None
    body, _ = redact_body({"data": incident_document(incident)}, decision)
    doc: Any = body.get("data")
    if not isinstance(doc, dict):
        return None
    assignees = doc.get("assignees")
    first = assignees[0] if isinstance(assignees, list) and assignees else None
    return {
        "title": _text(doc.get("title")),
        "description": _text(doc.get("description")) or None,
        "severity": _text(doc.get("severity")),
        "status": _text(doc.get("status")),
        "assignee": _text(first),
    }


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def visible_note(body: dict[str, Any], visibility: str | None, decision: Decision) -> str | None:
    """A note's text as the connector may read it; None if it may not read the note."""
    if not decision.allows(Action.INCIDENT_READ):
        return None
    if (visibility or "public") not in decision.visibilities:
        return None
    shown, _ = redact_body(body, decision)
    data = shown.get("data")
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        return str(data["text"])
    if isinstance(data, str):
        return data
    return None
