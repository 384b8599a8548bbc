"""The correlation engine: attach, open or park each alert, and explain the decision.

Runs as a command under the log lock, so concurrent alerts sharing a fingerprint are
decided one after another: the first opens the incident, the rest attach to it. The
decision (rule, fields, fingerprint, groups) is written into the alert event itself;
the projection only replays what the event says, so a rebuild reproduces it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from incidents.events.envelope import EncodedObject, Event, placed
from incidents.events.timeformat import format_micros
from incidents.incident.aggregate import CLASSIFICATIONS, Incident
from incidents.incident.commands import (
    ChangeStatus,
    Declare,
    build_event,
    state_of,
)
from incidents.incident.correlation.alert import RESOLVE, TRIGGER, Alert
from incidents.incident.correlation.fingerprint import fingerprint
from incidents.incident.correlation.records import GroupRecord
from incidents.incident.correlation.rules import CorrelationRules, Rule
from incidents.incident.lifecycle import ACTIVE, Status, severity_rank
from incidents.incident.projection import ProjectionSession
from incidents.log.session import AppendResult, AppendSession, Outcome


@dataclass(frozen=True, slots=True)
class AlertOutcome:
    """What became of one alert."""

    event_id: str
    alert_key: str
    # created | duplicate | conflict
    outcome: str
    # attached | opened | unattached | follows-alert (resolve/ack) | duplicate
    decision: str
    incident_id: str | None
    rule: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "alert_key": self.alert_key,
            "outcome": self.outcome,
            "decision": self.decision,
            "incident_id": self.incident_id,
            "rule": self.rule,
        }


@dataclass(frozen=True, slots=True)
class _Match:
    rule: Rule
    fields: dict[str, str]
    fingerprint: str

    @property
    def group_key(self) -> str:
        return f"{self.rule.name}|{self.fingerprint}"


def _applicable(rules: CorrelationRules, alert: Alert) -> tuple[list[_Match], list[dict[str, Any]]]:
    """The rules whose fields the alert has (with fingerprints), and those it lacks."""
    matches: list[_Match] = []
    skipped: list[dict[str, Any]] = []
    for rule in rules.rules:
        values = {name: alert.field(name) for name in rule.fields}
        missing = [name for name, value in values.items() if value is None]
        if missing:
            # Never a shared "empty" bucket: the rule simply does not apply.
            skipped.append({"rule": rule.name, "missing": missing})
            continue
        pairs = [(name, str(values[name])) for name in rule.fields]
        matches.append(_Match(rule, dict(pairs), fingerprint(pairs)))
    return matches, skipped


def _absorbs(group: GroupRecord, incident: Incident | None, rule: Rule, at_us: int) -> bool:
    if incident is None or Status(incident.status) not in ACTIVE:
        return False
    windows = rule.windows
    return (
        at_us - group.opened_us <= windows.absorb_us
        and at_us - group.last_us <= windows.quiet_us
        and at_us - group.opened_us <= windows.max_lifetime_us
    )


def _classification_of(alert: Alert) -> str:
    visibility = alert.event.visibility if alert.event is not None else None
    if visibility is None:
        return "public"
    # A level incidents do not have is kept at the strictest one they do.
    return visibility if visibility in CLASSIFICATIONS else CLASSIFICATIONS[-1]


_Applicable = tuple[list[_Match], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class IngestAlerts:
    """Record alerts from one delivery, correlating each against the open incidents."""

    alerts: tuple[Alert, ...]
    rules: CorrelationRules
    # Who delivered them (an integration principal or a user).
    recorded_by: str
    # Per alert, the rules it matches (with fingerprints) and those it lacks fields
    # for. They depend on the alert alone, so they are computed where the command is
    # made (a request's thread), not on the writer thread under the log lock.
    applicable: tuple[_Applicable, ...] = field(init=False, repr=False, compare=False)
    # Per provider alert, its event validated without a placement (no incident, no
    # correlation yet): under the lock it is only placed (see `placed`).
    templates: tuple[Event | None, ...] = field(init=False, repr=False, compare=False)

    @property
    def dedupe_keys(self) -> list[tuple[str, str]]:
        """The dedupe key of each alert's event (looked up before the log lock)."""
        return [(alert.source, alert.origin_id) for alert in self.alerts]

    def __len__(self) -> int:
        # A group commit counts a delivery by its alerts (one event each, at least).
        return len(self.alerts)

    def __post_init__(self) -> None:
        applicable = tuple(
            _applicable(self.rules, alert) if alert.event_type == TRIGGER else ([], [])
            for alert in self.alerts
        )
        object.__setattr__(self, "applicable", applicable)
        templates = tuple(
            None if alert.event is not None else _template(alert, self.recorded_by)
            for alert in self.alerts
        )
        object.__setattr__(self, "templates", templates)

    def execute(self, session: AppendSession) -> list[AlertOutcome]:
        # One query per table for the whole delivery, not one (or two) per alert (the
        # keys usually came with the group's, and are not asked again).
        session.prefetch_keys(self.dedupe_keys)
        state = state_of(session)
        state.prefetch_alerts(alert.key for alert in self.alerts)
        applicable = self.applicable
        group_keys = [match.group_key for matches, _ in applicable for match in matches]
        state.prefetch_groups(group_keys)
        # The incidents those alerts and groups point at, and their chain tips.
        targets = {g.incident_id for g in map(state.group, group_keys) if g is not None}
        targets |= {
            r.incident_id
            for r in map(state.alert, (alert.key for alert in self.alerts))
            if r is not None and r.incident_id is not None
        }
        state.prefetch(targets)
        session.prefetch_chains(targets)
        return [
            self._one(session, alert, found, template)
            for alert, found, template in zip(self.alerts, applicable, self.templates, strict=True)
        ]

    def _one(
        self,
        session: AppendSession,
        alert: Alert,
        applicable: tuple[list[_Match], list[dict[str, Any]]],
        template: Event | None,
    ) -> AlertOutcome:
        state = state_of(session)
        prior = session.lookup(alert.source, alert.origin_id)
        if prior is not None:
            # A provider re-delivering (or an HA pair sending twice) is a duplicate even
            # if volatile fields changed; a client's CloudEvent is held to its content.
            same = alert.event is None or prior.content_hash == alert.event.content_hash
            return AlertOutcome(
                prior.event_id,
                alert.key,
                "duplicate" if same else "conflict",
                "duplicate",
                prior.incident_id,
            )
        if alert.event_type == TRIGGER:
            return self._trigger(session, state, alert, applicable, template)
        return self._follow(session, state, alert, template)

    # --- firing ----------------------------------------------------------------

    def _trigger(
        self,
        session: AppendSession,
        state: ProjectionSession,
        alert: Alert,
        applicable: tuple[list[_Match], list[dict[str, Any]]],
        template: Event | None,
    ) -> AlertOutcome:
        at = alert.time_us
        matches, skipped = applicable
        target: str | None = None
        chosen: _Match | None = None
        reason = ""
        also: list[str] = []

        record = state.alert(alert.key)
        if record is not None and record.incident_id is not None:
            incident = state.incident(record.incident_id)
            if incident is not None and Status(incident.status) in ACTIVE:
                target, reason = incident.id, "the same alert is already attached"
                chosen = next((m for m in matches if m.rule.name == record.rule), None)
        for match in matches:
            group = state.group(match.group_key)
            if group is None:
                continue
            incident = state.incident(group.incident_id)
            if not _absorbs(group, incident, match.rule, at):
                continue
            if target is None:
                target, chosen, reason = group.incident_id, match, "fingerprint matched"
            elif group.incident_id != target and group.incident_id not in also:
                also.append(group.incident_id)

        severity = self.rules.severity_of(alert.severity)
        decision = "attached" if target is not None else "unattached"
        if target is None and severity_rank(severity) <= severity_rank(self.rules.open_incident_at):
            opened = Declare(
                title=alert.summary or alert.name or f"Alert {alert.key}",
                actor=self.recorded_by,
                # As restricted as the alert that opens it: its summary is the title.
                classification=_classification_of(alert),
                severity=severity,
                service=alert.field("service"),
                labels={k: v for k, v in alert.labels.items()},
                opened_by_alert={"key": alert.key, "event_id": alert.event_id},
            ).execute(session)
            target, decision = opened.incident.id, "opened"
            chosen = matches[0] if matches else None
            reason = f"{severity} alert at or above open_incident_at {self.rules.open_incident_at}"

        groups: list[dict[str, Any]] = []
        if target is not None:
            for match in matches:
                group = state.group(match.group_key)
                if group is not None and group.incident_id != target:
                    if _absorbs(group, state.incident(group.incident_id), match.rule, at):
                        continue  # still grouping into another incident: leave it
                    group = None
                opened_us = group.opened_us if group is not None else at
                groups.append(
                    {
                        "key": match.group_key,
                        "rule": match.rule.name,
                        "incident_id": target,
                        "opened_us": opened_us,
                        "last_us": max(at, group.last_us if group is not None else at),
                    }
                )
        correlation: dict[str, Any] = {
            "decision": decision,
            "reason": reason or "no open incident matched and the severity does not open one",
            "severity": severity,
            "rule": chosen.rule.name if chosen else None,
            "fields": chosen.fields if chosen else {},
            "fingerprint": chosen.fingerprint if chosen else None,
            "groups": groups,
            "skipped_rules": skipped,
        }
        if also:
            # The same failure grouped elsewhere too: likely duplicates, linked below.
            correlation["also_matched"] = also
        result = self._record(session, alert, template, target, correlation, chosen)
        if result.outcome is Outcome.CREATED and target is not None:
            for other in also:
                self._link_duplicate(session, target, other, chosen)
        return AlertOutcome(
            alert.event_id,
            alert.key,
            result.outcome.value,
            decision,
            target,
            chosen.rule.name if chosen else None,
        )

    def _link_duplicate(
        self, session: AppendSession, incident_id: str, other: str, match: _Match | None
    ) -> None:
        state = state_of(session)
        for here, there in ((incident_id, other), (other, incident_id)):
            incident = state.incident(here)
            if incident is None or there in incident.related:
                continue
            event = build_event(
                "im.incident.link",
                here,
                {
                    "incident_id": here,
                    "related": [there],
                    "relation": "possible-duplicate",
                    "rule": match.rule.name if match else None,
                    "fields": match.fields if match else {},
                },
                self.recorded_by,
                visibility=incident.classification,
            )
            session.emit(event, self.recorded_by)

    # --- acknowledge / resolve ---------------------------------------------------

    def _follow(
        self,
        session: AppendSession,
        state: ProjectionSession,
        alert: Alert,
        template: Event | None,
    ) -> AlertOutcome:
        record = state.alert(alert.key)
        target = record.incident_id if record is not None else None
        rule_name = record.rule if record is not None else None
        correlation = {
            "decision": "follows-alert",
            "reason": "recorded where the alert is attached"
            if target
            else "the alert is not attached to an incident",
            "rule": rule_name,
        }
        result = self._record(session, alert, template, target, correlation, None)
        if result.outcome is Outcome.CREATED and alert.event_type == RESOLVE and target:
            self._after_resolve(session, state, alert, target, rule_name)
        return AlertOutcome(
            alert.event_id, alert.key, result.outcome.value, "follows-alert", target, rule_name
        )

    def _after_resolve(
        self,
        session: AppendSession,
        state: ProjectionSession,
        alert: Alert,
        incident_id: str,
        rule_name: str | None,
    ) -> None:
        incident = state.incident(incident_id)
        if incident is None or incident.firing_alerts > 0 or incident.alert_count == 0:
            return
        session.emit(
            build_event(
                "im.incident.alerts_resolved",
                incident_id,
                {
                    "incident_id": incident_id,
                    "alerts": incident.alert_count,
                    "last_alert": alert.key,
                },
                self.recorded_by,
                event_id=f"{alert.event_id}:all-resolved",
                visibility=incident.classification,
            ),
            self.recorded_by,
        )
        rule = self.rules.rule(rule_name)
        if rule is not None and rule.auto_mitigate and incident.status == Status.OPEN.value:
            ChangeStatus(
                incident_id,
                self.recorded_by,
                None,
                target=Status.MITIGATED,
                reason=f"all alerts resolved (auto_mitigate of rule {rule.name})",
            ).execute(session)

    # --- the event ----------------------------------------------------------------

    def _record(
        self,
        session: AppendSession,
        alert: Alert,
        template: Event | None,
        incident_id: str | None,
        correlation: dict[str, Any],
        match: _Match | None,
    ) -> AppendResult:
        incident = state_of(session).incident(incident_id) if incident_id else None
        visibility = incident.classification if incident is not None else None
        if alert.event is not None:
            event = _attach_client_event(alert.event, incident_id, correlation)
        else:
            assert template is not None, "a provider alert's event is prepared with it"
            event = placed(
                template,
                incident_id,
                visibility=visibility,
                fingerprint=match.fingerprint if match is not None else None,
                data={**template.data, "correlation": correlation},
            )
        return session.emit(event, self.recorded_by)


def _template(alert: Alert, recorded_by: str) -> Event:
    """A provider alert's event, validated before correlation places it."""
    return build_event(
        alert.event_type,
        None,
        # Encoded here, on the request's thread: the event under the lock and the
        # alert's projection row both splice this encoding in.
        {"alert": EncodedObject(alert_document(alert))},
        recorded_by,
        event_id=alert.event_id,
        origin_id=alert.origin_id,
        source=alert.source,
        time=format_micros(alert.time_us),
    )


def alert_document(alert: Alert) -> dict[str, Any]:
    """The event's ``data.alert``: the provider's description plus the normalised parts."""
    doc: dict[str, Any] = {
        "key": alert.key,
        "provider": alert.provider,
        "status": "firing" if alert.event_type == TRIGGER else alert.event_type.rsplit(".", 1)[1],
    }
    for name in ("name", "severity", "summary"):
        value = getattr(alert, name)
        if value is not None:
            doc[name] = value
    if alert.labels:
        doc["labels"] = alert.labels
    if alert.attributes:
        doc["attributes"] = alert.attributes
    doc.update(alert.document)
    return doc


def _attach_client_event(
    event: Event, incident_id: str | None, correlation: dict[str, Any]
) -> Event:
    """A client's alert CloudEvent, placed on the incident correlation chose.

    The content hash stays the one of what the client sent, so the client's replay
    of the same event is still recognised as a duplicate.
    """
    if incident_id is None and not isinstance(event.data, dict):
        return event
    data = event.data
    if isinstance(data, dict) and "correlation" not in data:
        data = {**data, "correlation": correlation}
    placed = replace(event, incident_id=incident_id or event.incident_id, data=data)
    placed.body_json = orjson.dumps(placed.body(), option=orjson.OPT_SORT_KEYS)
    return placed
