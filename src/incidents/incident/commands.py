"""Commands: every change to an incident, decided under the log lock and recorded as events.

A command checks the incident's current state (as the append transaction sees it),
then emits events; the projection folds them in the same transaction. Nothing writes
incident state any other way. A command that refuses raises a :class:`Rejected`
subclass before emitting anything, which fails only that request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from incidents.events.envelope import Event, EventValidationError, normalize
from incidents.incident.aggregate import CLASSIFICATIONS, UPDATABLE, Incident
from incidents.incident.lifecycle import (
    ACTIVE,
    InvalidTransition,
    Status,
    can_move,
    event_type_for,
    parse_severity,
    severity_rank,
)
from incidents.incident.projection import INCIDENTS, ProjectionSession
from incidents.log.commands import Rejected
from incidents.log.projections import ProjectionSessions
from incidents.log.session import AppendResult, AppendSession, Outcome

ORCHESTRATOR_SOURCE = "incidents://orchestrator"


class IncidentNotFound(Rejected):
    """No incident with that id, or none the caller may see (indistinguishable)."""

    def __init__(self, incident_id: str) -> None:
        self.incident_id = incident_id
        super().__init__(f"no incident {incident_id!r}")


class CommandConflict(Rejected):
    """The command does not fit the incident's current state (a 409)."""


class InvalidCommand(Rejected):
    """The command's own arguments are unusable (a 422)."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command did: the incident afterwards and the events it appended."""

    incident: Incident
    events: list[AppendResult] = field(default_factory=list)
    # True when an idempotency key named an earlier, identical request.
    replayed: bool = False


def snapshot(incident: Incident) -> Incident:
    """A copy safe to hand out while the session's own copy keeps changing."""
    return Incident.from_json(incident.to_json())


def state_of(session: AppendSession) -> ProjectionSession:
    """The incident projection's state in the transaction under way."""
    state = session.projection
    if isinstance(state, ProjectionSessions):
        state = state.get(INCIDENTS)
    if not isinstance(state, ProjectionSession):
        raise RuntimeError("commands need the incident projection session")
    return state


def build_event(
    event_type: str,
    incident_id: str | None,
    data: dict[str, Any],
    actor: str,
    *,
    event_id: str | None = None,
    origin_id: str | None = None,
    visibility: str | None = None,
    source: str = ORCHESTRATOR_SOURCE,
    time: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Event:
    """A validated CloudEvent for a command to emit."""
    raw: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "datacontenttype": "application/json",
        "data": data,
        "imactor": actor,
    }
    if incident_id is not None:
        raw["subject"] = f"incident/{incident_id}"
    if origin_id is not None:
        raw["imoriginid"] = origin_id
    if visibility is not None and visibility != "public":
        raw["imvisibility"] = visibility
    if time is not None:
        raw["time"] = time
    if extra:
        raw.update(extra)
    try:
        return normalize(raw)
    except EventValidationError as exc:
        raise InvalidCommand(str(exc)) from None


def _visible(incident: Incident | None, visibilities: frozenset[str] | None) -> bool:
    return incident is not None and incident.visible_to(visibilities)


@dataclass(frozen=True, slots=True)
class IncidentCommand:
    """Shared parts: who acts, on which incident, and what they may see."""

    incident_id: str
    actor: str
    # The caller's visible classifications; an incident outside them does not exist
    # for the caller. None means no restriction (local admin tools).
    visibilities: frozenset[str] | None

    def load(self, session: AppendSession) -> Incident:
        incident = state_of(session).incident(self.incident_id)
        if incident is None or not _visible(incident, self.visibilities):
            raise IncidentNotFound(self.incident_id)
        return incident

    def emit(
        self, session: AppendSession, event_type: str, data: dict[str, Any], **kw: Any
    ) -> AppendResult:
        incident = state_of(session).incident(self.incident_id)
        visibility = incident.classification if incident is not None else None
        kw.setdefault("visibility", visibility)
        event = build_event(event_type, self.incident_id, data, self.actor, **kw)
        return session.emit(event, self.actor)

    def done(self, session: AppendSession, events: list[AppendResult]) -> CommandResult:
        return CommandResult(snapshot(self.load(session)), events)


@dataclass(frozen=True, slots=True)
class Declare:
    """Open a new incident (or a draft) with the next free ``INC-n``."""

    title: str
    actor: str
    severity: str = "SEV-3"
    service: str | None = None
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    classification: str = "public"
    commander: str | None = None
    draft: bool = False
    parent_id: str | None = None
    visibilities: frozenset[str] | None = None
    # A client's retry key: the same key from the same caller declares only once.
    idempotency_key: str | None = None
    # Alert-opened incidents: the alert that opened it, for the record.
    opened_by_alert: dict[str, Any] | None = None

    def execute(self, session: AppendSession) -> CommandResult:
        state = state_of(session)
        origin = f"declare:{self.actor}:{self.idempotency_key}" if self.idempotency_key else None
        if origin is not None:
            prior = session.lookup(ORCHESTRATOR_SOURCE, origin)
            if prior is not None and prior.incident_id is not None:
                incident = state.incident(prior.incident_id)
                if incident is not None:
                    return CommandResult(snapshot(incident), [], replayed=True)
        if self.classification not in CLASSIFICATIONS:
            raise InvalidCommand(
                f"classification must be one of {', '.join(CLASSIFICATIONS)}, "
                f"got {self.classification!r}"
            )
        if self.visibilities is not None and self.classification not in self.visibilities:
            raise InvalidCommand(
                f"you may not declare a {self.classification} incident: you could not see it"
            )
        if self.parent_id is not None:
            parent = state.incident(self.parent_id)
            if not _visible(parent, self.visibilities):
                raise IncidentNotFound(self.parent_id)
        incident_id = state.allocate_incident_id()
        data: dict[str, Any] = {
            "incident_id": incident_id,
            "title": self.title,
            "severity": self.severity,
            "status": (Status.DRAFT if self.draft else Status.OPEN).value,
            "classification": self.classification,
        }
        for name in ("service", "commander", "parent_id"):
            value = getattr(self, name)
            if value:
                data[name] = value
        if self.description:
            data["description"] = self.description
        if self.labels:
            data["labels"] = self.labels
        if self.opened_by_alert:
            data["opened_by_alert"] = self.opened_by_alert
        event = build_event(
            "im.incident.declare",
            incident_id,
            data,
            self.actor,
            origin_id=origin,
            visibility=self.classification,
        )
        results = [session.emit(event, self.actor)]
        if self.parent_id is not None:
            parent = state.incident(self.parent_id)
            link = build_event(
                "im.incident.link",
                self.parent_id,
                {"child": incident_id, "relation": "child"},
                self.actor,
                visibility=parent.classification if parent is not None else None,
            )
            results.append(session.emit(link, self.actor))
        incident = state.incident(incident_id)
        assert incident is not None
        return CommandResult(snapshot(incident), results)


@dataclass(frozen=True, slots=True)
class ChangeStatus(IncidentCommand):
    """Move an incident through the state machine."""

    target: Status = Status.OPEN
    reason: str | None = None

    def execute(self, session: AppendSession) -> CommandResult:
        incident = self.load(session)
        current = Status(incident.status)
        if not can_move(current, self.target):
            raise InvalidTransition(self.incident_id, current, self.target)
        data: dict[str, Any] = {
            "incident_id": self.incident_id,
            "previous_status": current.value,
            "new_status": self.target.value,
        }
        if self.reason:
            data["reason"] = self.reason
        result = self.emit(session, event_type_for(current, self.target), data)
        return self.done(session, [result])


@dataclass(frozen=True, slots=True)
class Acknowledge(IncidentCommand):
    """Record that a responder has the incident (no change of status)."""

    note: str | None = None

    def execute(self, session: AppendSession) -> CommandResult:
        incident = self.load(session)
        if Status(incident.status) not in ACTIVE:
            raise CommandConflict(
                f"{self.incident_id} is {incident.status}; only a draft, open or mitigated "
                "incident can be acknowledged"
            )
        data: dict[str, Any] = {"incident_id": self.incident_id, "by": self.actor}
        if self.note:
            data["note"] = self.note
        return self.done(session, [self.emit(session, "im.incident.acknowledge", data)])


@dataclass(frozen=True, slots=True)
class Escalate(IncidentCommand):
    """Raise severity and/or tier (no change of status)."""

    severity: str | None = None
    tier: int | None = None
    reason: str | None = None

    def execute(self, session: AppendSession) -> CommandResult:
        incident = self.load(session)
        if Status(incident.status) not in ACTIVE:
            raise CommandConflict(
                f"{self.incident_id} is {incident.status}; only an active incident escalates"
            )
        severity = self.severity
        tier = self.tier
        if severity is None and tier is None:
            # Plain "escalate": one severity step up, or one tier up at SEV-1.
            rank = severity_rank(incident.severity)
            if rank > 1:
                severity = f"SEV-{rank - 1}"
            else:
                tier = incident.tier + 1
        if severity is not None:
            parsed = parse_severity(severity)
            if parsed is None:
                raise InvalidCommand(f"severity must be SEV-1 ... SEV-4, got {severity!r}")
            if severity_rank(parsed) >= severity_rank(incident.severity):
                raise CommandConflict(
                    f"{self.incident_id} is already {incident.severity}; escalation must "
                    f"raise it (to a lower number than {incident.severity})"
                )
            severity = parsed
        if tier is not None and tier <= incident.tier:
            raise CommandConflict(
                f"{self.incident_id} is already at tier {incident.tier}; escalation must raise it"
            )
        data: dict[str, Any] = {
            "incident_id": self.incident_id,
            "previous_severity": incident.severity,
            "previous_tier": incident.tier,
        }
        if severity is not None:
            data["severity"] = severity
        if tier is not None:
            data["tier"] = tier
        if self.reason:
            data["reason"] = self.reason
        return self.done(session, [self.emit(session, "im.incident.escalate", data)])


@dataclass(frozen=True, slots=True)
class Update(IncidentCommand):
    """Change descriptive fields (title, description, service, labels, severity, class)."""

    changes: dict[str, Any] = field(default_factory=dict)

    def execute(self, session: AppendSession) -> CommandResult:
        incident = self.load(session)
        unknown = sorted(set(self.changes) - set(UPDATABLE))
        if unknown:
            raise InvalidCommand(
                f"cannot change {', '.join(unknown)}; changeable: {', '.join(UPDATABLE)} "
                "(status, roles and assignees have their own endpoints)"
            )
        if "severity" in self.changes and parse_severity(self.changes["severity"]) is None:
            raise InvalidCommand(
                f"severity must be SEV-1 ... SEV-4, got {self.changes['severity']!r}"
            )
        classification = self.changes.get("classification")
        if classification is not None and classification not in CLASSIFICATIONS:
            raise InvalidCommand(
                f"classification must be one of {', '.join(CLASSIFICATIONS)}, "
                f"got {classification!r}"
            )
        if (
            classification is not None
            and self.visibilities is not None
            and classification not in self.visibilities
        ):
            raise InvalidCommand(
                f"you may not classify {self.incident_id} as {classification}: "
                "you could no longer see it"
            )
        current = {name: getattr(incident, name) for name in UPDATABLE}
        if "severity" in self.changes:
            current["severity"] = incident.severity
        changes = {
            k: (parse_severity(v) if k == "severity" else v)
            for k, v in self.changes.items()
            if (parse_severity(v) if k == "severity" else v) != current[k]
        }
        if not changes:
            return self.done(session, [])
        data = {
            "incident_id": self.incident_id,
            "changes": changes,
            "previous": {k: current[k] for k in changes},
        }
        return self.done(session, [self.emit(session, "im.incident.update", data)])


@dataclass(frozen=True, slots=True)
class Assign(IncidentCommand):
    """Add or remove assignees."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def execute(self, session: AppendSession) -> CommandResult:
        incident = self.load(session)
        add = [u for u in self.add if u not in incident.assignees]
        remove = [u for u in self.remove if u in incident.assignees]
        if not add and not remove:
            return self.done(session, [])
        data: dict[str, Any] = {"incident_id": self.incident_id, "add": add, "remove": remove}
        return self.done(session, [self.emit(session, "im.incident.assign", data)])


@dataclass(frozen=True, slots=True)
class AssignRole(IncidentCommand):
    """Give a role (commander, scribe, communications, ...) to a user, or clear it."""

    role: str = "commander"
    user: str | None = None

    def execute(self, session: AppendSession) -> CommandResult:
        incident = self.load(session)
        previous = incident.roles.get(self.role)
        if previous == self.user:
            return self.done(session, [])
        data: dict[str, Any] = {
            "incident_id": self.incident_id,
            "role": self.role,
            "user": self.user,
            "previous": previous,
        }
        return self.done(session, [self.emit(session, "im.incident.role.assign", data)])


@dataclass(frozen=True, slots=True)
class AddNote(IncidentCommand):
    """Add a note to the timeline."""

    text: str = ""
    visibility: str | None = None

    def execute(self, session: AppendSession) -> CommandResult:
        incident = self.load(session)
        visibility = self.visibility or incident.classification
        if self.visibilities is not None and visibility not in self.visibilities:
            raise InvalidCommand(f"you may not write a {visibility} note: you could not read it")
        data = {"incident_id": self.incident_id, "text": self.text}
        result = self.emit(session, "im.note.add", data, visibility=visibility)
        return self.done(session, [result])


@dataclass(frozen=True, slots=True)
class Merge(IncidentCommand):
    """Merge a duplicate (``incident_id``) into ``target``: the duplicate is canceled
    with a link, its alerts move, and both timelines record it."""

    target: str = ""
    reason: str | None = None

    def execute(self, session: AppendSession) -> CommandResult:
        duplicate = self.load(session)
        state = state_of(session)
        target = state.incident(self.target)
        if not _visible(target, self.visibilities):
            raise IncidentNotFound(self.target)
        assert target is not None
        if target.id == duplicate.id:
            raise InvalidCommand("an incident cannot be merged into itself")
        final = (Status.CLOSED.value, Status.CANCELED.value)
        if duplicate.merged_into is not None or duplicate.status in final:
            raise CommandConflict(
                f"{duplicate.id} is {duplicate.status}; only an incident still being worked "
                "on can be merged into another"
            )
        if target.merged_into is not None or target.status in final:
            raise CommandConflict(
                f"{target.id} is {target.status}; merge into an incident that is not closed"
            )
        moved = {"alerts": duplicate.alert_count, "firing_alerts": duplicate.firing_alerts}
        base: dict[str, Any] = {"reason": self.reason} if self.reason else {}
        first = self.emit(
            session,
            "im.incident.merge",
            {"incident_id": duplicate.id, "into": target.id, **moved, **base},
            extra={"imrelatedids": target.id},
        )
        second = session.emit(
            build_event(
                "im.incident.merge",
                target.id,
                {"incident_id": target.id, "from": duplicate.id, **moved, **base},
                self.actor,
                visibility=target.classification,
                extra={"imrelatedids": duplicate.id},
            ),
            self.actor,
        )
        return self.done(session, [first, second])


@dataclass(frozen=True, slots=True)
class Link(IncidentCommand):
    """Relate incidents: ``parent`` makes this one a child; ``related`` are siblings."""

    parent_id: str | None = None
    related: tuple[str, ...] = ()

    def execute(self, session: AppendSession) -> CommandResult:
        self.load(session)
        state = state_of(session)
        others = [*self.related, *([self.parent_id] if self.parent_id else [])]
        for other in others:
            if other == self.incident_id:
                raise InvalidCommand("an incident cannot be related to itself")
            if not _visible(state.incident(other), self.visibilities):
                raise IncidentNotFound(other)
        if not others:
            raise InvalidCommand("name a parent_id or at least one related incident")
        data: dict[str, Any] = {"incident_id": self.incident_id}
        if self.parent_id:
            data["parent_id"] = self.parent_id
        if self.related:
            data["related"] = list(self.related)
        results = [self.emit(session, "im.incident.link", data)]
        for other in self.related:
            sibling = state.incident(other)
            results.append(
                session.emit(
                    build_event(
                        "im.incident.link",
                        other,
                        {"incident_id": other, "related": [self.incident_id]},
                        self.actor,
                        visibility=sibling.classification if sibling is not None else None,
                    ),
                    self.actor,
                )
            )
        return self.done(session, [r for r in results if r.outcome is Outcome.CREATED])
