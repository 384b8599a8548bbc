"""Applying a ticket's changes to an incident: one command under the log lock.

It records an ``im.<vendor>.sync`` event with a deterministic id (vendor, record,
version), so a change delivered twice (a re-poll, a redelivered webhook) is a dedupe
hit and changes nothing; then it runs the ordinary incident commands as the
connector, so the state machine's guards apply. A change a guard refuses is reported
back (it goes to the conflict queue), not raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from incidents.incident.commands import (
    AddNote,
    Assign,
    ChangeStatus,
    Update,
    build_event,
    state_of,
)
from incidents.incident.lifecycle import parse_status
from incidents.log.commands import Rejected
from incidents.log.session import AppendSession


@dataclass(frozen=True, slots=True)
class Applied:
    """What became of one set of ticket changes."""

    duplicate: bool = False
    applied: dict[str, str | None] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    events: int = 0


@dataclass(frozen=True, slots=True)
class ApplyExternal:
    """Record one inbound change of a linked ticket and apply it to the incident."""

    incident_id: str
    actor: str
    source: str
    event_type: str
    # Deterministic: vendor, connector, record and version (or changelog id).
    event_id: str
    summary: Mapping[str, Any]
    # Internal field -> value to apply.
    changes: Mapping[str, str | None] = field(default_factory=dict)
    # (comment id, text) of ticket comments to record as notes.
    notes: tuple[tuple[str, str], ...] = ()

    def execute(self, session: AppendSession) -> Applied:
        if session.lookup(self.source, self.event_id) is not None:
            return Applied(duplicate=True)
        incident = state_of(session).incident(self.incident_id)
        if incident is None:
            return Applied(refused={"*": f"no incident {self.incident_id}"})
        applied: dict[str, str | None] = {}
        refused: dict[str, str] = {}
        events = 0
        who = (self.incident_id, self.actor, None)
        updates = {
            k: v
            for k, v in self.changes.items()
            if k in ("title", "description", "severity") and v is not None
        }
        if "description" in self.changes and self.changes["description"] is None:
            updates["description"] = ""
        steps: list[tuple[list[str], Any]] = []
        if updates:
            steps.append((list(updates), Update(*who, changes=updates)))
        if "status" in self.changes:
            target = parse_status(self.changes["status"])
            if target is None:
                refused["status"] = f"not a status: {self.changes['status']!r}"
            else:
                steps.append((["status"], ChangeStatus(*who, target=target)))
        if "assignee" in self.changes:
            value = self.changes["assignee"]
            current = tuple(incident.assignees)
            add = (value,) if value and value not in current else ()
            remove = tuple(u for u in current if u != value)
            steps.append((["assignee"], Assign(*who, add=add, remove=remove)))
        for names, command in steps:
            try:
                result = command.execute(session)
            except Rejected as exc:
                for name in names:
                    refused[name] = str(exc)
                continue
            events += len(result.events)
            for name in names:
                applied[name] = self.changes[name]
        for _comment_id, text in self.notes:
            try:
                AddNote(*who, text=text).execute(session)
                events += 1
            except Rejected as exc:
                refused["note"] = str(exc)
        data = {**self.summary, "applied": applied, "refused": refused}
        event = build_event(
            self.event_type,
            self.incident_id,
            data,
            self.actor,
            event_id=self.event_id,
            source=self.source,
            visibility=incident.classification,
        )
        session.emit(event, self.actor)
        return Applied(False, applied, refused, events + 1)
