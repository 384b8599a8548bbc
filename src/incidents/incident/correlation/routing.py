"""Alert CloudEvents posted to the timeline endpoint, routed through correlation.

An ``im.alert.*`` event that names no incident is an alert for correlation to place:
it attaches to a matching open incident, opens one, or waits unattached, exactly as
a provider webhook's alerts do. The client's event is stored as sent (its content hash
unchanged, so a replay is still a duplicate), placed on the incident chosen. Every
other event of the same request is appended as it is, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from incidents.events.envelope import Event
from incidents.incident.commands import state_of
from incidents.incident.correlation.alert import ACKNOWLEDGE, RESOLVE, TRIGGER, Alert
from incidents.incident.correlation.engine import IngestAlerts
from incidents.incident.correlation.rules import CorrelationRules
from incidents.log.session import AppendResult, AppendSession, Outcome, PendingEvent

ALERT_TYPES = frozenset({TRIGGER, ACKNOWLEDGE, RESOLVE})
# Normalised attributes a client may give at the top of its alert description.
_ATTRIBUTES = ("alert_rule", "service", "host", "severity", "error_type")


def needs_correlation(event: Event) -> bool:
    """Whether an appended event is an alert for correlation to place."""
    return event.type in ALERT_TYPES and event.incident_id is None


def _strings(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def _text(doc: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = doc.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def alert_of_event(event: Event, now_us: int) -> Alert:
    """The alert a client's CloudEvent describes (``data.alert``, else ``data``)."""
    data = event.data if isinstance(event.data, dict) else {}
    nested = data.get("alert")
    doc: dict[str, Any] = nested if isinstance(nested, dict) else data
    labels = _strings(doc.get("labels"))
    attributes = _strings(doc.get("attributes"))
    for name in _ATTRIBUTES:
        value = _text(doc, name)
        if value is not None:
            attributes.setdefault(name, value)
    # The same key the projection derives for this event, so the two always agree.
    key = _text(doc, "key") if nested is doc else None
    if key is None:
        key = (
            f"{event.source}:{event.fingerprint}"
            if event.fingerprint
            else f"{event.source}:{event.origin_id or event.id}"
        )
    provider = _text(doc, "provider") or event.source.split(":", 1)[0]
    return Alert(
        provider=provider,
        key=key,
        event_type=event.type,
        time_us=event.time_us if event.time_us is not None else now_us,
        event_id=event.id,
        origin_id=event.dedupe_id,
        source=event.source,
        name=_text(doc, "name", "alertname") or labels.get("alertname"),
        severity=_text(doc, "severity") or labels.get("severity"),
        summary=_text(doc, "summary", "title"),
        labels=labels,
        attributes=attributes,
        event=event,
    )


@dataclass(frozen=True, slots=True)
class AppendWithCorrelation:
    """Append a request's events; alert events without an incident are correlated."""

    pending: tuple[PendingEvent, ...]
    rules: CorrelationRules

    def execute(self, session: AppendSession) -> list[AppendResult]:
        session.prefetch_keys([(i.event.source, i.event.dedupe_id) for i in self.pending])
        return [self._one(session, item) for item in self.pending]

    def _one(self, session: AppendSession, item: PendingEvent) -> AppendResult:
        event = item.event
        if not needs_correlation(event) or session.lookup(event.source, event.dedupe_id):
            # Not an alert to place, or its key is taken: the plain append answers
            # (a duplicate or conflict stores nothing).
            return session.emit(event, item.recorded_by)
        alert = alert_of_event(event, session.now_us)
        [outcome] = IngestAlerts((alert,), self.rules, item.recorded_by).execute(session)
        record = state_of(session).alert(alert.key)
        return AppendResult(
            Outcome(outcome.outcome),
            event.id,
            outcome.incident_id,
            record.last_position if record is not None else None,
        )


def correlation_route(
    rules: CorrelationRules,
) -> Callable[[Sequence[PendingEvent]], AppendWithCorrelation | None]:
    """The timeline's router: a correlating command when a request holds an alert to place."""

    def route(pending: Sequence[PendingEvent]) -> AppendWithCorrelation | None:
        if not any(needs_correlation(item.event) for item in pending):
            return None
        return AppendWithCorrelation(tuple(pending), rules)

    return route
