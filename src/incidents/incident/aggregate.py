"""The incident aggregate: its state, and how each event changes it (the fold).

The fold is the only code that turns events into incident state, live and on
rebuild alike. It is total: an event it cannot apply (a move the state machine
forbids, arriving as a raw CloudEvent) stays on the timeline and leaves the state
unchanged, so replaying the log always gives the same state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from incidents.incident.lifecycle import (
    STATUS_EVENT_TARGETS,
    Status,
    can_move,
    parse_severity,
    parse_status,
    severity_rank,
)

_NUMBERED = re.compile(r"^INC-([0-9]{1,15})$")

# Event types the incident projection folds (others leave incidents untouched).
INCIDENT_TYPES = frozenset(
    {
        "im.incident.declare",
        "im.incident.update",
        "im.incident.acknowledge",
        "im.incident.escalate",
        "im.incident.assign",
        "im.incident.role.assign",
        "im.incident.merge",
        "im.incident.link",
        "im.incident.alerts_resolved",
        "im.note.add",
        *STATUS_EVENT_TARGETS,
    }
)

# Fields a PATCH (im.incident.update) may change.
UPDATABLE = ("title", "description", "service", "labels", "severity", "classification")
CLASSIFICATIONS = ("public", "restricted", "confidential")


def incident_number(incident_id: str) -> int | None:
    """The n of ``INC-n``; None for ids in another form."""
    match = _NUMBERED.fullmatch(incident_id)
    return int(match.group(1)) if match else None


@dataclass(slots=True)
class Incident:
    """One incident as its timeline says it stands."""

    id: str
    title: str
    status: str
    severity: str
    declared_us: int
    description: str = ""
    service: str | None = None
    classification: str = "public"
    labels: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    assignees: list[str] = field(default_factory=list)
    tier: int = 1
    parent_id: str | None = None
    related: list[str] = field(default_factory=list)
    merged_into: str | None = None
    merged_from: list[str] = field(default_factory=list)
    acknowledged_us: int | None = None
    acknowledged_by: str | None = None
    mitigated_us: int | None = None
    resolved_us: int | None = None
    closed_us: int | None = None
    canceled_us: int | None = None
    declared_by: str = ""
    alert_count: int = 0
    firing_alerts: int = 0
    note_count: int = 0
    updated_us: int = 0
    last_position: int = 0

    @property
    def number(self) -> int | None:
        return incident_number(self.id)

    def visible_to(self, visibilities: frozenset[str] | None) -> bool:
        """Whether a reader opening ``visibilities`` (None: no restriction) may see it."""
        return visibilities is None or self.classification in visibilities

    @property
    def commander(self) -> str | None:
        return self.roles.get("commander")

    def to_json(self) -> bytes:
        # orjson encodes dataclasses natively, much faster than asdict(). Sorted keys:
        # the same state whether folded from a new event or from its stored (key-sorted)
        # body during a rebuild.
        return orjson.dumps(self, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, raw: bytes) -> Incident:
        return cls(**orjson.loads(raw))

    def figures(self) -> dict[str, float | None]:
        """Time to acknowledge, mitigate and resolve, in seconds since declaration."""

        def since(us: int | None) -> float | None:
            return None if us is None else round((us - self.declared_us) / 1_000_000, 3)

        return {
            "time_to_acknowledge_seconds": since(self.acknowledged_us),
            "time_to_mitigate_seconds": since(self.mitigated_us),
            "time_to_resolve_seconds": since(self.resolved_us),
        }


@dataclass(frozen=True, slots=True)
class Fact:
    """What the fold needs of one stored event."""

    position: int
    type: str
    incident_id: str | None
    time_us: int
    actor: str
    visibility: str | None
    data: dict[str, Any]
    related_ids: tuple[str, ...] = ()


def _text(value: object, default: str | None = None) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else default


def _labels(value: object) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items() if isinstance(k, str) and k}
    if isinstance(value, list):
        out: dict[str, str] = {}
        for item in value:
            if isinstance(item, str) and item:
                key, _, val = item.partition("=")
                out[key] = val
        return out
    return {}


def declared(fact: Fact) -> Incident:
    """A new incident from its ``im.incident.declare`` event."""
    data = fact.data
    assert fact.incident_id is not None
    status = parse_status(data.get("status"))
    if status not in (Status.DRAFT, Status.OPEN):
        status = Status.OPEN
    classification = _text(data.get("classification")) or fact.visibility or "public"
    if classification not in CLASSIFICATIONS:
        classification = "public"
    roles: dict[str, str] = {}
    commander = _text(data.get("commander"))
    if commander:
        roles["commander"] = commander
    return Incident(
        id=fact.incident_id,
        title=_text(data.get("title"), "Untitled incident") or "Untitled incident",
        description=_text(data.get("description"), "") or "",
        status=status.value,
        severity=parse_severity(data.get("severity")) or "SEV-3",
        declared_us=fact.time_us,
        service=_text(data.get("service")),
        classification=classification,
        labels=_labels(data.get("labels")),
        roles=roles,
        parent_id=_text(data.get("parent_id")),
        declared_by=fact.actor,
        updated_us=fact.time_us,
        last_position=fact.position,
    )


def apply(incident: Incident, fact: Fact) -> bool:
    """Fold one event into ``incident``; False when the event changes nothing."""
    changed = _apply(incident, fact)
    for related in fact.related_ids:
        if related != incident.id and related not in incident.related:
            incident.related.append(related)
            changed = True
    if changed:
        incident.updated_us = max(incident.updated_us, fact.time_us)
        incident.last_position = fact.position
    return changed


def _apply(incident: Incident, fact: Fact) -> bool:
    data = fact.data
    kind = fact.type
    if kind in STATUS_EVENT_TARGETS:
        return _move(incident, fact)
    if kind == "im.incident.acknowledge":
        if incident.acknowledged_us is not None:
            return False
        incident.acknowledged_us = fact.time_us
        incident.acknowledged_by = _text(data.get("by")) or fact.actor
        return True
    if kind == "im.incident.escalate":
        changed = False
        severity = parse_severity(data.get("severity"))
        if severity is not None and severity_rank(severity) < severity_rank(incident.severity):
            incident.severity = severity
            changed = True
        tier = data.get("tier")
        if isinstance(tier, int) and not isinstance(tier, bool) and tier > incident.tier:
            incident.tier = tier
            changed = True
        return changed
    if kind == "im.incident.update":
        return _update(incident, data.get("changes"))
    if kind == "im.incident.assign":
        return _assign(incident, data)
    if kind == "im.incident.role.assign":
        role = _text(data.get("role"))
        if role is None:
            return False
        user = _text(data.get("user"))
        if user is None:
            return incident.roles.pop(role, None) is not None
        if incident.roles.get(role) == user:
            return False
        incident.roles[role] = user
        return True
    if kind == "im.note.add":
        incident.note_count += 1
        return True
    if kind == "im.incident.merge":
        return _merge(incident, fact)
    if kind == "im.incident.link":
        return _link(incident, data)
    if kind == "im.incident.alerts_resolved":
        return False
    return False


def _move(incident: Incident, fact: Fact) -> bool:
    target = STATUS_EVENT_TARGETS[fact.type]
    named = parse_status(fact.data.get("new_status"))
    if named is not None:
        target = named
    if target is None:
        return False
    current = Status(incident.status)
    if not can_move(current, target):
        return False
    incident.status = target.value
    stamp = {
        Status.MITIGATED: "mitigated_us",
        Status.RESOLVED: "resolved_us",
        Status.CLOSED: "closed_us",
        Status.CANCELED: "canceled_us",
    }.get(target)
    if stamp is not None:
        setattr(incident, stamp, fact.time_us)
    if target is Status.OPEN:
        # Reopened: the incident is no longer mitigated or resolved.
        incident.mitigated_us = None
        incident.resolved_us = None
    return True


def _update(incident: Incident, changes: object) -> bool:
    if not isinstance(changes, dict):
        return False
    changed = False
    for name in UPDATABLE:
        if name not in changes:
            continue
        value = changes[name]
        if name == "labels":
            labels = _labels(value)
            if labels != incident.labels:
                incident.labels = labels
                changed = True
        elif name == "severity":
            severity = parse_severity(value)
            if severity is not None and severity != incident.severity:
                incident.severity = severity
                changed = True
        elif name == "classification":
            if value in CLASSIFICATIONS and value != incident.classification:
                incident.classification = value
                changed = True
        elif name == "title":
            title = _text(value)
            if title is not None and title != incident.title:
                incident.title = title
                changed = True
        else:
            text = _text(value, "") if name == "description" else _text(value)
            if getattr(incident, name) != text:
                setattr(incident, name, text)
                changed = True
    return changed


def _assign(incident: Incident, data: dict[str, Any]) -> bool:
    before = list(incident.assignees)
    add = data.get("add")
    remove = data.get("remove")
    single = _text(data.get("user")) or _text(data.get("assignee"))
    if single is not None and add is None:
        add = [single]
    for user in add if isinstance(add, list) else []:
        if isinstance(user, str) and user and user not in incident.assignees:
            incident.assignees.append(user)
    for user in remove if isinstance(remove, list) else []:
        if user in incident.assignees:
            incident.assignees.remove(user)
    return incident.assignees != before


def _merge(incident: Incident, fact: Fact) -> bool:
    data = fact.data
    into = _text(data.get("into"))
    source = _text(data.get("from"))
    if into is not None and into != incident.id:
        if incident.merged_into is not None:
            return False
        incident.merged_into = into
        if Status(incident.status) not in (Status.CLOSED, Status.CANCELED):
            incident.status = Status.CANCELED.value
            incident.canceled_us = fact.time_us
        incident.firing_alerts = 0
        incident.alert_count = 0
        return True
    if source is not None and source != incident.id and source not in incident.merged_from:
        incident.merged_from.append(source)
        moved = data.get("alerts")
        firing = data.get("firing_alerts")
        if isinstance(moved, int) and not isinstance(moved, bool):
            incident.alert_count += moved
        if isinstance(firing, int) and not isinstance(firing, bool):
            incident.firing_alerts += firing
        return True
    return False


def _link(incident: Incident, data: dict[str, Any]) -> bool:
    changed = False
    parent = _text(data.get("parent_id"))
    if parent is not None and parent != incident.id and incident.parent_id != parent:
        incident.parent_id = parent
        changed = True
    related = data.get("related")
    for other in related if isinstance(related, list) else []:
        if isinstance(other, str) and other not in ("", incident.id, *incident.related):
            incident.related.append(other)
            changed = True
    return changed
