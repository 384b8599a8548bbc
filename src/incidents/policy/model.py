"""What a policy decision is about (the subject) and what it yields (the decision)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# The overview's classification scale, lowest first.
CLEARANCE_LEVELS = ("public", "internal", "confidential", "restricted", "secret")


class Action(StrEnum):
    """What a request asks to do."""

    READ = "timeline.read"
    APPEND = "timeline.append"
    EXPORT = "timeline.export"
    VERIFY = "timeline.verify"
    ADMIN = "identity.admin"
    INCIDENT_READ = "incident.read"
    # Declare, update, acknowledge, escalate, assign, note, and every status move but close.
    INCIDENT_WRITE = "incident.write"
    # Close an incident, and merge one into another.
    INCIDENT_CLOSE = "incident.close"
    # Place and release legal holds; see the retention plan and the holds.
    LEGAL_HOLD = "retention.legal_hold"
    # Erase fields of stored events (a data subject's request).
    ERASE = "retention.erase"
    # Attach files to an incident (reading them needs incident.read).
    ARTIFACT_WRITE = "artifact.write"


# The role that grants each action, named in a 403 so a person knows what to ask for.
REQUIRED_ROLE = {
    Action.READ: "timeline.reader",
    Action.APPEND: "timeline.writer",
    Action.EXPORT: "timeline.exporter",
    Action.VERIFY: "timeline.exporter",
    Action.ADMIN: "admin",
    Action.INCIDENT_READ: "incident.reader",
    Action.INCIDENT_WRITE: "incident.responder",
    Action.INCIDENT_CLOSE: "incident.commander",
    Action.LEGAL_HOLD: "compliance.officer",
    Action.ERASE: "compliance.officer",
    Action.ARTIFACT_WRITE: "incident.responder",
}

ROLES = (
    "incident.reader",
    "timeline.reader",
    "timeline.writer",
    "timeline.exporter",
    "incident.responder",
    "incident.commander",
    "compliance.officer",
    "admin",
)

ATTRIBUTES = (
    "restricted_access",
    "confidential_access",
    "pii_access",
    "phi_access",
    "financial_access",
    "legal_hold_access",
)


@dataclass(frozen=True, slots=True)
class Subject:
    """Who is asking: identity plus everything the policy may look at."""

    id: str
    roles: frozenset[str] = frozenset()
    attributes: frozenset[str] = frozenset()
    clearance: str = "public"
    groups: frozenset[str] = frozenset()

    def as_input(self) -> dict[str, Any]:
        """The ``input.subject`` document handed to Rego."""
        return {
            "id": self.id,
            "roles": sorted(self.roles),
            "attributes": sorted(self.attributes),
            "clearance": self.clearance,
            "groups": sorted(self.groups),
        }


@dataclass(frozen=True, slots=True)
class FieldRule:
    """Classifies untagged data fields by name: ``*email*`` -> ``pii``."""

    pattern: str
    data_class: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What one subject may do and see, decided once per request."""

    subject: Subject
    actions: frozenset[str]
    visibilities: frozenset[str]
    data_classes: frozenset[str]
    field_rules: tuple[FieldRule, ...] = ()
    marker: str = "[REDACTED]"
    # Class-specific markers, e.g. {"pii": "**[REDACTED - PII]**"}; fall back to marker.
    class_markers: dict[str, str] = field(default_factory=dict)

    def allows(self, action: Action) -> bool:
        return action.value in self.actions

    def marker_for(self, data_class: str) -> str:
        return self.class_markers.get(data_class, self.marker)


class PolicyUnavailable(RuntimeError):
    """The decision point could not answer; every guarded request fails closed."""
