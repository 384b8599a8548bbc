"""Persona views of a board: what each reader of a status board needs, and no more.

Every view is built from the incident's projected document and the few events the
board names, and every piece of it passes the reader's decision: incidents outside
their classifications are never rendered, events are taken only from visibilities the
decision opens (narrowed further for the ``customer`` view) and rendered through
:func:`incidents.timeline.render.to_entry`, and the incident's document goes through
the one redaction function, exactly as the API's reads do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from incidents.boards.state import BoardState
from incidents.events.timeformat import format_micros, parse_micros
from incidents.incident.aggregate import Incident
from incidents.incident.document import incident_document
from incidents.incident.lifecycle import ACTIVE, Status
from incidents.log.records import StoredEvent
from incidents.policy.model import Decision
from incidents.policy.redaction import redact_body
from incidents.timeline.render import to_entry

# A status update is expected this often while an incident is active (unless the last
# update named its own next time).
UPDATE_CADENCE_US = 30 * 60 * 1_000_000


class Persona(StrEnum):
    RESPONDER = "responder"
    COMMANDER = "commander"
    EXECUTIVE = "executive"
    CUSTOMER = "customer"
    COMPLIANCE = "compliance"


class UnknownPersona(ValueError):
    """A persona that is not one of :class:`Persona`."""


def parse_persona(value: str | None) -> Persona:
    """The persona a client named (``responder`` when none); raises UnknownPersona."""
    if value is None or not value.strip():
        return Persona.RESPONDER
    try:
        return Persona(value.strip().lower())
    except ValueError:
        names = ", ".join(p.value for p in Persona)
        raise UnknownPersona(f"persona must be one of {names}, got {value!r}") from None


# What a customer may ever see: public events of public incidents.
_CUSTOMER_VISIBILITIES = frozenset({"public"})
# Events a public status page lists (no notes, roles or escalations: they name people).
_CUSTOMER_TYPES = frozenset(
    {
        "im.incident.declare",
        "im.status_update.post",
        "im.incident.state_change",
        "im.incident.mitigate",
        "im.incident.resolve",
        "im.incident.close",
        "im.incident.cancel",
        "im.incident.reopen",
    }
)
# Plain words for the public and executive views.
_PUBLIC_STATUS = {
    "draft": "investigating",
    "open": "investigating",
    "mitigated": "monitoring",
    "resolved": "resolved",
    "closed": "resolved",
    "canceled": "resolved",
}
_SEVERITY_WORDS = {
    "SEV-1": "critical",
    "SEV-2": "major",
    "SEV-3": "minor",
    "SEV-4": "low",
}


def visible_to(persona: Persona, decision: Decision) -> frozenset[str]:
    """The event visibilities this persona's view of the board draws from."""
    if persona is Persona.CUSTOMER:
        return decision.visibilities & _CUSTOMER_VISIBILITIES
    return decision.visibilities


def incident_shown(persona: Persona, incident: Incident, decision: Decision) -> bool:
    """Whether this reader's persona view may show the incident at all."""
    return incident.visible_to(visible_to(persona, decision))


@dataclass(frozen=True, slots=True)
class Wanted:
    """The positions a persona's view of one board shows, by purpose."""

    key: list[int]
    escalations: list[int]
    update: int | None
    alerts: list[int]
    tickets: list[int]

    def all(self) -> set[int]:
        found = {*self.key, *self.escalations, *self.alerts, *self.tickets}
        if self.update is not None:
            found.add(self.update)
        return found


def _latest(lists: Mapping[str, list[int]], visibilities: Iterable[str], keep: int) -> list[int]:
    merged = sorted({p for v in visibilities for p in lists.get(v, [])}, reverse=True)
    return merged[:keep]


def _latest_keyed(
    lists: Mapping[str, list[list[Any]]], visibilities: Iterable[str], keep: int
) -> list[int]:
    # An alert seen in several visibilities shows once, at its latest visible event.
    latest: dict[str, int] = {}
    for v in visibilities:
        for key, position in lists.get(v, []):
            latest[key] = max(latest.get(key, 0), int(position))
    return sorted(latest.values(), reverse=True)[:keep]


def wanted(
    persona: Persona, state: BoardState | None, decision: Decision, *, summary: bool = False
) -> Wanted:
    """The positions to load for a persona's view (``summary``: the all-boards list)."""
    if state is None:
        return Wanted([], [], None, [], [])
    seen = visible_to(persona, decision)
    updates = [p for v, p in state.updates.items() if v in seen]
    update = max(updates) if updates else None
    if summary or persona in (Persona.EXECUTIVE, Persona.COMPLIANCE):
        return Wanted([], [], update, [], [])
    key = _latest(state.key, seen, 20)
    if persona is Persona.CUSTOMER:
        return Wanted(key, [], update, [], [])
    escalations = _latest(state.escalations, seen, 10) if persona is Persona.COMMANDER else []
    return Wanted(
        key,
        escalations,
        update,
        _latest_keyed(state.alerts, seen, 10),
        _latest_keyed(state.tickets, seen, 10),
    )


def _since(start: int | None, end: int | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0, end - start) / 1_000_000, 3)


def _document(incident: Incident, decision: Decision) -> dict[str, Any]:
    body, _ = redact_body({"data": incident_document(incident)}, decision)
    doc: dict[str, Any] = body["data"]
    return doc


def _entries(
    positions: Iterable[int], rows: Mapping[int, StoredEvent], decision: Decision
) -> list[dict[str, Any]]:
    return [to_entry(rows[p], decision) for p in positions if p in rows]


def _timing(incident: Incident, now_us: int) -> dict[str, Any]:
    final = incident.resolved_us or incident.closed_us or incident.canceled_us
    return {
        "declared_at": format_micros(incident.declared_us),
        "duration_seconds": _since(incident.declared_us, final or now_us),
        "since_declared_seconds": _since(incident.declared_us, now_us),
        "since_acknowledged_seconds": _since(incident.acknowledged_us, now_us),
        "since_mitigated_seconds": _since(incident.mitigated_us, now_us),
        "time_to_acknowledge_seconds": _since(incident.declared_us, incident.acknowledged_us),
        "time_to_mitigate_seconds": _since(incident.declared_us, incident.mitigated_us),
    }


def _impact(doc: Mapping[str, Any]) -> dict[str, Any]:
    raw_labels = doc.get("labels")
    labels: Mapping[str, Any] = raw_labels if isinstance(raw_labels, dict) else {}
    services = [doc["service"]] if doc.get("service") else []
    for name in ("services", "affected_services", "affected"):
        raw = labels.get(name)
        if isinstance(raw, str):
            services.extend(s.strip() for s in raw.split(",") if s.strip())
    return {
        "description": doc.get("description") or "",
        "affected_services": list(dict.fromkeys(services)),
        "impact": labels.get("impact"),
    }


def _next_update(incident: Incident, update: dict[str, Any] | None, now_us: int) -> str | None:
    if Status(incident.status) not in ACTIVE:
        return None
    data = update.get("data") if update else None
    if isinstance(data, dict):
        named = data.get("next_update_at") or data.get("next_update")
        if isinstance(named, str) and named:
            return named
    last = update_time_us(update) if update else None
    base = last if last is not None else incident.declared_us
    return format_micros(base + UPDATE_CADENCE_US)


def update_time_us(entry: Mapping[str, Any]) -> int | None:
    """The time of a rendered entry, in microseconds (for the next-update estimate)."""
    raw = entry.get("event_time")
    if not isinstance(raw, str):
        return None
    try:
        return parse_micros(raw)
    except ValueError:
        return None


def _open_actions(incident: Incident, doc: Mapping[str, Any], update: Any) -> list[str]:
    """What a commander still has to see to: derived from the state, not recorded."""
    if Status(incident.status) not in ACTIVE:
        return []
    actions: list[str] = []
    if incident.acknowledged_us is None:
        actions.append("acknowledge the incident")
    if not doc.get("commander"):
        actions.append("assign a commander")
    if incident.firing_alerts:
        actions.append(f"{incident.firing_alerts} alert(s) still firing")
    if update is None:
        actions.append("post a first status update")
    if incident.status == Status.MITIGATED.value:
        actions.append("confirm the fix and resolve")
    return actions


def _sentence(doc: Mapping[str, Any], incident: Incident, now_us: int) -> str:
    """A plain-language summary for an executive."""
    severity = _SEVERITY_WORDS.get(incident.severity, incident.severity)
    status = _PUBLIC_STATUS.get(incident.status, incident.status)
    minutes = int((_since(incident.declared_us, now_us) or 0) // 60)
    service = f" affecting {doc['service']}" if doc.get("service") else ""
    return (
        f"A {severity} ({incident.severity}) incident{service} is {status}; "
        f"declared {minutes} minute(s) ago."
    )


def _public_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    # No actors, sources or raw data: a status page names no one. The declaration's
    # text is the responders' description, not a public statement: only its title.
    declared = entry["event_type"] == "im.incident.declare"
    return {
        "event_time": entry["event_time"],
        "event_type": entry["event_type"],
        "title": entry["title"],
        "content": None if declared else entry.get("content"),
    }


def render(
    persona: Persona,
    incident: Incident,
    state: BoardState | None,
    rows: Mapping[int, StoredEvent],
    decision: Decision,
    now_us: int,
    *,
    with_timeline: bool = True,
    summary: bool = False,
) -> dict[str, Any]:
    """One incident's board as ``persona`` shows it to the reader of ``decision``.

    ``rows`` holds the events at the positions :func:`wanted` named;
    ``with_timeline`` False (a reader without timeline access) leaves events out.
    """
    pick = wanted(persona, state, decision, summary=summary)
    if not with_timeline:
        pick = Wanted([], [], None, [], [])
    doc = _document(incident, decision)
    update_entries = _entries([pick.update] if pick.update else [], rows, decision)
    update = update_entries[0] if update_entries else None
    seen = visible_to(persona, decision)
    board: dict[str, Any] = {
        "persona": persona.value,
        "incident_id": incident.id,
        "title": doc.get("title"),
        "status": incident.status,
        "severity": incident.severity,
        "as_of_position": max(incident.last_position, state.last_position if state else 0),
    }
    if persona is Persona.CUSTOMER:
        key = [e for e in _entries(pick.key, rows, decision) if e["event_type"] in _CUSTOMER_TYPES]
        impact = _impact(doc)
        board.update(
            {
                "status": _PUBLIC_STATUS.get(incident.status, incident.status),
                "severity": _SEVERITY_WORDS.get(incident.severity, incident.severity),
                "started_at": format_micros(incident.declared_us),
                "resolved_at": format_micros(incident.resolved_us)
                if incident.resolved_us
                else None,
                "affected_services": impact["affected_services"],
                "latest_update": _public_entry(update) if update else None,
                "updates": [_public_entry(e) for e in key],
            }
        )
        return board
    timing = _timing(incident, now_us)
    if persona is Persona.EXECUTIVE:
        board.update(
            {
                "summary": _sentence(doc, incident, now_us),
                "impact": _impact(doc),
                "duration_seconds": timing["duration_seconds"],
                "declared_at": timing["declared_at"],
                "latest_update": update,
                "next_update_at": _next_update(incident, update, now_us),
                "commander": doc.get("commander"),
            }
        )
        return board
    if persona is Persona.COMPLIANCE:
        board.update(_compliance(state, decision, seen))
        board["declared_at"] = timing["declared_at"]
        board["classification"] = doc.get("classification")
        return board
    board.update(
        {
            "service": doc.get("service"),
            "commander": doc.get("commander"),
            "assignees": doc.get("assignees", []),
            "impact": _impact(doc),
            "timing": timing,
            "alerts": {
                "total": incident.alert_count,
                "firing": incident.firing_alerts,
                "linked": _entries(pick.alerts, rows, decision),
            },
            "tickets": _entries(pick.tickets, rows, decision),
            "latest_update": update,
            "key_entries": _entries(pick.key, rows, decision),
            "allowed_transitions": doc.get("allowed_transitions", []),
            "events": sum(n for v, n in (state.visibilities if state else {}).items() if v in seen),
        }
    )
    if persona is Persona.COMMANDER:
        board.update(
            {
                "roles": doc.get("roles", {}),
                "escalations": _entries(pick.escalations, rows, decision),
                "tier": doc.get("tier"),
                "open_actions": _open_actions(incident, doc, update),
                "next_update_at": _next_update(incident, update, now_us),
            }
        )
    return board


def _compliance(
    state: BoardState | None, decision: Decision, seen: frozenset[str]
) -> dict[str, Any]:
    if state is None:
        return {"events": 0, "data_classes": {}, "legal_hold": False, "chain": None}
    closed = sorted(c for c in state.data_classes if c not in decision.data_classes)
    return {
        "events": sum(n for v, n in state.visibilities.items() if v in seen),
        "events_by_visibility": {v: n for v, n in sorted(state.visibilities.items()) if v in seen},
        "events_hidden_by_visibility": sum(
            n for v, n in state.visibilities.items() if v not in seen
        ),
        "data_classes": dict(sorted(state.data_classes.items())),
        "tagged_events": state.tagged,
        # Classes present that this reader's decision does not open: their values show
        # as the redaction marker wherever this reader reads them.
        "redacted_classes": closed,
        "legal_hold": state.legal_hold,
        "chain": {
            "events_linked": state.chain.linked,
            "intact": state.chain.intact,
            "first_broken_position": state.chain.broken_at,
            "tip": state.chain.tip,
        },
    }
