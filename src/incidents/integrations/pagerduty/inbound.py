"""PagerDuty Webhooks v3: signature checks and incident events as alerts to correlate.

A PagerDuty incident is one alert series here (key ``pagerduty://<name>/<incident id>``).
``incident.triggered``, ``incident.reopened``, ``incident.unacknowledged`` and
``incident.escalated`` say the incident is (still) firing and record an
``im.alert.trigger``; ``incident.acknowledged`` an ``im.alert.acknowledge``;
``incident.resolved`` an ``im.alert.resolve``. Other event types (``incident.annotated``,
``incident.priority_updated``, ...) are not alert transitions: they are answered 202
and not stored.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from incidents.events.timeformat import TimeFormatError, now_micros, parse_micros
from incidents.incident.correlation.alert import ACKNOWLEDGE, RESOLVE, TRIGGER, Alert
from incidents.integrations.credentials import Integration
from incidents.integrations.payload import MAX_PROVIDER_ID, PayloadError

PAGERDUTY = "pagerduty"

SIGNATURE_HEADER = "x-pagerduty-signature"
WEBHOOK_ID_HEADER = "x-webhook-id"
_NAMESPACE = uuid.UUID("0e6f3f7c-2b8d-4d0a-8a0b-3c5f9d1e2a47")
# Longest header considered: a handful of rotating secrets, not an attacker's megabyte.
_MAX_SIGNATURE_HEADER = 4096

EVENT_TYPES = {
    "incident.triggered": TRIGGER,
    "incident.reopened": TRIGGER,
    "incident.unacknowledged": TRIGGER,
    # Escalation changes who is paged, not whether the incident fires: the alert is
    # still firing, recorded again on the incident it is attached to.
    "incident.escalated": TRIGGER,
    "incident.acknowledged": ACKNOWLEDGE,
    "incident.resolved": RESOLVE,
}
# PagerDuty priorities and urgencies, in the severity words correlation maps.
_PRIORITY_SEVERITY = {"P1": "critical", "P2": "high", "P3": "warning", "P4": "low", "P5": "info"}
_URGENCY_SEVERITY = {"high": "high", "low": "low"}


class SignatureMissing(Exception):
    """No ``X-PagerDuty-Signature`` (or no ``v1=`` value in it)."""


class SignatureMismatch(Exception):
    """A signature was given, but none matches a configured secret."""


def sign(secret: str, body: bytes) -> str:
    """The ``v1=`` signature PagerDuty sends for ``body`` under ``secret``."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(header: str | None, body: bytes, integrations: tuple[Integration, ...]) -> Integration:
    """The integration whose secret signed the raw ``body``.

    The header may carry several comma-separated ``v1=<hex>`` values (PagerDuty sends
    one per active secret while a secret is rotated); any match accepts. Every pair is
    compared in constant time.
    """
    if not header or not header.strip():
        raise SignatureMissing("the request has no X-PagerDuty-Signature header")
    if len(header) > _MAX_SIGNATURE_HEADER:
        raise SignatureMismatch("the X-PagerDuty-Signature header is too long")
    given = [
        part.strip()[3:].lower().encode()
        for part in header.split(",")
        if part.strip().startswith("v1=")
    ]
    if not given:
        raise SignatureMissing("X-PagerDuty-Signature holds no v1= signature")
    found: Integration | None = None
    for integration in integrations:
        for secret in integration.credentials:
            expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
            for candidate in given:
                if hmac.compare_digest(candidate, expected) and found is None:
                    found = integration
    if found is None:
        raise SignatureMismatch("no X-PagerDuty-Signature value matches a configured secret")
    return found


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery: the alert it records, or why it records none."""

    event_id: str
    event_type: str
    alert: Alert | None
    skipped: str | None = None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _ref(value: object, field: str) -> str | None:
    """The ``summary`` (else ``id``) of a PagerDuty reference object."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PayloadError(field, "must be a reference object")
    return _text(value.get("summary")) or _text(value.get("id"))


def parse_delivery(
    body: bytes,
    integration: Integration,
    webhook_id: str | None = None,
    now_us: int | None = None,
) -> Delivery:
    """Read one v3 delivery (``{"event": {...}}``); PayloadError names a bad field."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError("body", f"is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("event"), dict):
        raise PayloadError("event", 'is required: the v3 webhook payload is {"event": {...}}')
    event: dict[str, Any] = doc["event"]
    event_id = _text(event.get("id")) or _text(webhook_id)
    if event_id is not None and (len(event_id) > MAX_PROVIDER_ID or not event_id.isprintable()):
        raise PayloadError(
            "event.id", f"must be printable text of at most {MAX_PROVIDER_ID} characters"
        )
    if event_id is None:
        raise PayloadError("event.id", "is required (or an X-Webhook-Id header)")
    event_type = event.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise PayloadError("event.event_type", "is required, such as incident.triggered")
    occurred = event.get("occurred_at")
    if not isinstance(occurred, str):
        raise PayloadError("event.occurred_at", "is required (an RFC 3339 time)")
    try:
        time_us = parse_micros(occurred)
    except TimeFormatError as exc:
        raise PayloadError("event.occurred_at", str(exc)) from None
    kind = EVENT_TYPES.get(event_type)
    if kind is None:
        return Delivery(event_id, event_type, None, f"{event_type} is not an alert transition")
    resource_type = event.get("resource_type")
    if resource_type is not None and resource_type != "incident":
        return Delivery(event_id, event_type, None, f"resource_type {resource_type!r} is ignored")
    data = event.get("data")
    if not isinstance(data, dict):
        raise PayloadError("event.data", "is required: the incident the event is about")
    incident_ref = _text(data.get("id"))
    if incident_ref is None:
        raise PayloadError("event.data.id", "is required: the PagerDuty incident id")
    service = _ref(data.get("service"), "event.data.service")
    priority = _ref(data.get("priority"), "event.data.priority")
    urgency = _text(data.get("urgency"))
    severity = _PRIORITY_SEVERITY.get(priority or "") or _URGENCY_SEVERITY.get(urgency or "")
    agent = _ref(event.get("agent"), "event.agent")
    title = _text(data.get("title"))

    attributes: dict[str, str] = {"alert_rule": f"pagerduty:{incident_ref}"}
    if service:
        attributes["service"] = service
    if severity:
        attributes["severity"] = severity
    labels: dict[str, str] = {}
    if service:
        labels["service"] = service
    if urgency:
        labels["urgency"] = urgency
    if priority:
        labels["priority"] = priority
    document: dict[str, Any] = {
        "pagerduty_event_type": event_type,
        "pagerduty_event_id": event_id,
        "incident": incident_ref,
        "occurred_at": occurred,
    }
    for name in ("number", "status", "incident_key", "html_url"):
        if data.get(name) is not None:
            document[name] = data[name]
    if agent:
        document["agent"] = agent
    origin_id = f"pagerduty:event:{event_id}"
    alert = Alert(
        provider=PAGERDUTY,
        key=f"{integration.source}/{incident_ref}",
        event_type=kind,
        time_us=time_us if time_us is not None else (now_us or now_micros()),
        event_id=str(uuid.uuid5(_NAMESPACE, f"{integration.source}|{origin_id}")),
        origin_id=origin_id,
        source=integration.source,
        name=title,
        severity=severity,
        summary=title,
        labels=labels,
        attributes=attributes,
        document=document,
    )
    return Delivery(event_id, event_type, alert)
