"""Rendering stored events: as CloudEvents (get, JSON export) and as timeline entries (list)."""

from __future__ import annotations

from typing import Any

from incidents.events.timeformat import format_micros
from incidents.events.types import human_title
from incidents.log.cloudevent import body_of, stored_cloudevent
from incidents.log.records import StoredEvent
from incidents.policy.model import Decision
from incidents.policy.redaction import redact_body

_TITLE_KEYS = ("title", "summary", "name")
_CONTENT_KEYS = ("content", "description", "message", "text", "note", "reason", "body")


def visible_body(row: StoredEvent, decision: Decision | None) -> tuple[dict[str, Any], bool]:
    """The body as ``decision`` lets its reader see it, and whether anything was redacted.

    Every renderer goes through here, so no output can skip redaction.
    """
    body = body_of(row)
    if decision is None:
        return body, False
    return redact_body(body, decision)


def to_cloudevent(
    row: StoredEvent,
    dialect: str = "spec",
    decision: Decision | None = None,
    *,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The stored event as a structured-mode CloudEvent v1.0, as ``decision`` lets its
    reader see it (see :func:`incidents.log.cloudevent.stored_cloudevent`).

    ``body``, when given without a decision, is the row's decoded body column.
    """
    if body is None or decision is not None:
        body, redacted = visible_body(row, decision)
        return stored_cloudevent(row, dialect, body=body, redacted=redacted)
    return stored_cloudevent(row, dialect, body=body)


def title_and_content(row: StoredEvent, body: dict[str, Any]) -> tuple[str, str | None, bool]:
    """A heading and text for an event: (title, content, title_came_from_data)."""
    data = body.get("data")
    title: str | None = None
    content: str | None = None
    if isinstance(data, dict):
        for key in _TITLE_KEYS:
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                title = value
                break
        for key in _CONTENT_KEYS:
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                content = value
                break
    elif isinstance(data, str) and data.strip():
        content = data
    if title is None:
        return human_title(row.type), content, False
    return title, content, True


def to_entry(row: StoredEvent, decision: Decision | None = None) -> dict[str, Any]:
    """The guide's timeline entry: id, incident_id, event_time, event_type, actor, title,
    content, source, created_at, plus data and the extension attributes."""
    body, redacted = visible_body(row, decision)
    title, content, _ = title_and_content(row, body)
    entry: dict[str, Any] = {
        "id": row.event_id,
        "incident_id": row.incident_id,
        "event_time": format_micros(row.time_us),
        "event_type": row.type,
        "actor": row.actor,
        "title": title,
        "content": content,
        "source": row.source,
        "created_at": format_micros(row.created_us),
        "position": row.position,
        "recorded_by": row.recorded_by,
        "visibility": row.visibility or "public",
    }
    optional = {
        "subject": row.subject,
        "origin_id": row.origin_id,
        "correlation_key": row.correlation_key,
        "fingerprint": row.fingerprint,
        "data_class": body.get("data_class"),
        "related_ids": body.get("related_ids"),
        "datacontenttype": body.get("datacontenttype"),
    }
    entry.update({k: v for k, v in optional.items() if v is not None})
    if "data" in body:
        entry["data"] = body["data"]
    elif "data_base64" in body:
        entry["data_base64"] = body["data_base64"]
    if body.get("ext"):
        entry["extensions"] = body["ext"]
    if redacted:
        entry["redaction_applied"] = True
    return entry
