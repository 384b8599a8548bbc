"""The outbox destination of one ITSM connector (``servicenow:prod``, ``jira:cloud``).

Only incident events that can change a ticket get an outbox row for it (see
:func:`takes`); rows of incidents the connector has nothing to do with are settled at
once. A batch's rows are grouped by incident, so a
burst of changes to one incident costs one read and at most one write of the ticket.
Vendor errors fail the incident's rows (the relay retries with backoff); a rate limit
fails the rest of the batch with the vendor's Retry-After.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import Enum
from typing import Any

import orjson

from incidents.bus.destination import RetryAfter
from incidents.store.outbox_store import OutboxRecord
from incidents.sync.engine import NoteRef, SyncEngine

log = logging.getLogger(__name__)

# Event types that can change what a ticket shows.
_FIELD_TYPES = frozenset(
    {
        "im.incident.declare",
        "im.incident.update",
        "im.incident.escalate",
        "im.incident.assign",
        "im.incident.state_change",
        "im.incident.mitigate",
        "im.incident.resolve",
        "im.incident.close",
        "im.incident.cancel",
        "im.incident.reopen",
    }
)
NOTE = "im.note.add"
SYNC_SUFFIX = ".sync"


class Kind(Enum):
    """What an incident event can be to a ticket."""

    FIELDS = "fields"  # a change of a field the ticket shows
    NOTE = "note"  # a note to copy as a work note or comment
    SYNC = "sync"  # a connector's sync event (which may ask for a push)


def kind_of(event_type: str) -> Kind | None:
    """What an event type can be to a ticket; None for those that never reach one.

    The one place the event types are sorted: :func:`takes` (which rows the outbox
    keeps) and the destination's delivery both follow it."""
    if event_type in _FIELD_TYPES:
        return Kind.FIELDS
    if event_type == NOTE:
        return Kind.NOTE
    if event_type.endswith(SYNC_SUFFIX):
        return Kind.SYNC
    return None


def takes(event_type: str, in_incident: bool) -> bool:
    """Whether an ITSM connector's outbox takes an event: an incident's field changes,
    notes and sync events (alerts and the rest never reach a ticket)."""
    return in_incident and kind_of(event_type) is not None


def _body(event: dict[str, Any]) -> dict[str, Any]:
    """The stored body of a structured-mode CloudEvent, as redaction reads it."""
    body: dict[str, Any] = {}
    if "data" in event:
        body["data"] = event["data"]
    tags = event.get("imdataclass")
    if isinstance(tags, str) and tags.startswith("{"):
        body["data_class"] = orjson.loads(tags)
    elif isinstance(tags, str) and tags:
        body["data_class"] = tags.split(",")
    return body


class ConnectorDestination:
    """Delivers incident changes to one connector's tickets through the sync engine."""

    def __init__(self, engine: SyncEngine, connector_id: str) -> None:
        self._engine = engine
        self.name = connector_id
        self._actor = engine.bound(connector_id).connector.actor

    def _wanted(
        self, row: OutboxRecord, event: dict[str, Any]
    ) -> tuple[bool, bool, NoteRef | None]:
        """(whether the ticket's fields may need a sync, whether a push was asked for,
        the note to copy)."""
        data = event.get("data")
        actor = event.get("imactor")
        kind = kind_of(row.event_type)
        if kind is Kind.NOTE:
            if actor == self._actor:
                return False, False, None
            body = _body(event)
            ref = NoteRef(str(event.get("id")), str(actor), event.get("imvisibility"), body)
            return False, False, ref
        if kind is Kind.SYNC and isinstance(data, dict):
            # A sync event asks this connector to write only when it names fields to
            # push; its pulls already match the ticket (no echo write).
            own = data.get("connector") == self.name
            asked = own and bool(data.get("push"))
            return (asked if own else True), asked, None
        if kind is Kind.FIELDS:
            wanted = actor != self._actor or row.event_type == "im.incident.declare"
            return wanted, False, None
        return False, False, None

    def deliver(self, rows: Sequence[OutboxRecord]) -> list[Exception | None]:
        results: list[Exception | None] = [None] * len(rows)
        by_incident: dict[str, tuple[list[int], bool, bool, list[NoteRef]]] = {}
        for index, row in enumerate(rows):
            if not row.aggregate_id:
                continue
            try:
                event = orjson.loads(row.payload)
            except orjson.JSONDecodeError:
                continue
            fields, asked, note = self._wanted(row, event)
            if not fields and note is None:
                continue
            indexes, any_fields, any_asked, notes = by_incident.setdefault(
                row.aggregate_id, ([], False, False, [])
            )
            indexes.append(index)
            if note is not None:
                notes.append(note)
            by_incident[row.aggregate_id] = (
                indexes,
                any_fields or fields,
                any_asked or asked,
                notes,
            )
        limited: RetryAfter | None = None
        for incident_id, (indexes, fields, asked, notes) in by_incident.items():
            error: Exception | None = limited
            if error is None:
                try:
                    self._engine.deliver(
                        self.name, incident_id, fields=fields, notes=notes, requested=asked
                    )
                except RetryAfter as exc:
                    error = limited = exc
                except Exception as exc:
                    log.info("sync %s of %s failed: %s", self.name, incident_id, exc)
                    error = exc
            for index in indexes:
                results[index] = error
        return results
