"""A stored row as the CloudEvent it records (unredacted: policy is applied above)."""

from __future__ import annotations

from typing import Any

import orjson

from incidents.events.attributes import SPEC_VERSION, Extension, output_name
from incidents.events.timeformat import format_micros
from incidents.log.records import StoredEvent


def body_of(row: StoredEvent) -> dict[str, Any]:
    """The decoded body column: data and the attributes without a column of their own."""
    decoded: dict[str, Any] = orjson.loads(row.body)
    return decoded


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


def stored_cloudevent(
    row: StoredEvent,
    dialect: str = "spec",
    *,
    body: dict[str, Any] | None = None,
    redacted: bool = False,
) -> dict[str, Any]:
    """A stored event as a structured-mode CloudEvent v1.0, with ``body`` (default: the
    row's own body column) as its data and attributes.

    ``dialect="spec"`` writes spec-conformant extension names (``imactor``) and lists
    as comma-separated strings; ``"dotted"`` writes the guide's ``im.actor`` spelling.
    ``redacted`` marks a body that policy has redacted (``imredactionapplied``).
    """
    if body is None:
        body = body_of(row)
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
    exactly ``orjson.dumps(stored_cloudevent(row))``, made faster.

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
            return orjson.dumps(stored_cloudevent(row, body=body))
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
