"""Rendering stored events: as CloudEvents (get, JSON export) and as timeline entries (list)."""

from __future__ import annotations

from typing import Any

import orjson

from incidents.events.attributes import SPEC_VERSION, Extension, output_name
from incidents.events.timeformat import format_micros
from incidents.events.types import human_title
from incidents.log.records import StoredEvent
from incidents.policy.model import Decision
from incidents.policy.redaction import redact_body

_TITLE_KEYS = ("title", "summary", "name")
_CONTENT_KEYS = ("content", "description", "message", "text", "note", "reason", "body")


def body_of(row: StoredEvent) -> dict[str, Any]:
    """The decoded body column: data and the attributes without a column of their own."""
    decoded: dict[str, Any] = orjson.loads(row.body)
    return decoded


def visible_body(row: StoredEvent, decision: Decision | None) -> tuple[dict[str, Any], bool]:
    """The body as ``decision`` lets its reader see it, and whether anything was redacted.

    Every renderer goes through here, so no output can skip redaction.
    """
    body = body_of(row)
    if decision is None:
        return body, False
    return redact_body(body, decision)


def _context_attributes(row: StoredEvent, body: dict[str, Any]) -> dict[str, Any]:
    """The CloudEvent's required and optional context attributes, in spec order."""
    event: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": row.event_id,
        "source": row.source,
        "type": row.type,
    }
    if row.subject is not None:
        event["subject"] = row.subject
    event["time"] = format_micros(row.time_us)
    if "datacontenttype" in body:
        event["datacontenttype"] = body["datacontenttype"]
    elif "data" in body:
        event["datacontenttype"] = "application/json"
    if "dataschema" in body:
        event["dataschema"] = body["dataschema"]
    return event


def to_cloudevent(
    row: StoredEvent,
    dialect: str = "spec",
    decision: Decision | None = None,
    *,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The stored event as a structured-mode CloudEvent v1.0.

    ``dialect="spec"`` writes spec-conformant extension names (``imactor``) and lists
    as comma-separated strings; ``"dotted"`` writes the guide's ``im.actor`` spelling.
    """
    if body is None or decision is not None:
        body, redacted = visible_body(row, decision)
    else:
        # The caller decoded the body column already (or holds what it was made from).
        redacted = False
    dotted = dialect == "dotted"
    event = _context_attributes(row, body)

    def put(ext: Extension, value: Any) -> None:
        if value is not None:
            event[output_name(ext, dialect)] = value

    put(Extension.ACTOR, row.actor)
    put(Extension.ORIGIN_ID, row.origin_id)
    put(Extension.INCIDENT_ID, row.incident_id)
    put(Extension.VISIBILITY, row.visibility)
    put(Extension.CORRELATION_KEY, row.correlation_key)
    put(Extension.FINGERPRINT, row.fingerprint)
    put(Extension.RECORDED_BY, row.recorded_by)
    data_class = body.get("data_class")
    if data_class is not None:
        if dotted:
            put(Extension.DATA_CLASS, data_class)
        elif isinstance(data_class, dict):
            # CloudEvents extension values are scalars: the path map travels as JSON text.
            put(Extension.DATA_CLASS, orjson.dumps(data_class).decode())
        else:
            put(Extension.DATA_CLASS, ",".join(data_class))
    related = body.get("related_ids")
    if related is not None:
        put(Extension.RELATED_IDS, related if dotted else ",".join(related))
    for name, value in body.get("ext", {}).items():
        event[name] = value
    if redacted:
        put(Extension.REDACTION_APPLIED, True)
    if "data" in body:
        event["data"] = body["data"]
    elif "data_base64" in body:
        event["data_base64"] = body["data_base64"]
    return event


# A body holding JSON data and nothing else, as commands and alerts store it. Keys are
# sorted, so "data" comes first; the check for '"data_' keeps out data_base64 and
# data_class (which sort between the two), wherever the text occurs.
_DATA_ONLY_PREFIX = b'{"data":'
_DATA_ONLY_SUFFIX = b',"datacontenttype":"application/json"}'


def cloudevent_json(row: StoredEvent, body: dict[str, Any] | None = None) -> bytes:
    """The stored event as structured-mode CloudEvent JSON (spec dialect, unredacted):
    exactly ``orjson.dumps(to_cloudevent(row))``, made faster.

    What the outbox relay delivers for every appended event; readers apply policy on
    their side. ``body`` is the decoded body column, when the caller has it.
    """
    raw = row.body
    spliced = (
        body is None
        and raw.startswith(_DATA_ONLY_PREFIX)
        and raw.endswith(_DATA_ONLY_SUFFIX)
        and b'"data_' not in raw
    )
    if spliced:
        # The data goes out as stored (the stored JSON is what decoding and encoding
        # it again would give), without decoding it.
        event = _context_attributes(row, {"datacontenttype": "application/json"})
    else:
        body = body_of(row) if body is None else body
        if len(body) > 1 or "data" not in body:
            # The rarer attributes: leave them to the general renderer.
            return orjson.dumps(to_cloudevent(row, body=body))
        event = _context_attributes(row, body)
    event["imactor"] = row.actor
    for name, value in (
        ("imoriginid", row.origin_id),
        ("imincidentid", row.incident_id),
        ("imvisibility", row.visibility),
        ("imcorrelationkey", row.correlation_key),
        ("imfingerprint", row.fingerprint),
    ):
        if value is not None:
            event[name] = value
    event["imrecordedby"] = row.recorded_by
    if spliced:
        data = raw[len(_DATA_ONLY_PREFIX) : -len(_DATA_ONLY_SUFFIX)]
        return orjson.dumps(event)[:-1] + b',"data":' + data + b"}"
    assert body is not None
    event["data"] = body["data"]
    return orjson.dumps(event)


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
