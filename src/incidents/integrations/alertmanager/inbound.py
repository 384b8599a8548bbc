"""Prometheus Alertmanager webhook payloads (version 4) as alerts to correlate.

Each entry of ``alerts[]`` becomes one alert. Its ids come from Alertmanager's own
identifiers (fingerprint, start time, status), so the same notification sent twice
(an HA pair of Alertmanagers, or a repeat while the alert keeps firing) is a dedupe
hit rather than a second alert. Unknown fields are ignored.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import orjson

from incidents.events.timeformat import TimeFormatError, now_micros, parse_micros
from incidents.incident.correlation.alert import RESOLVE, TRIGGER, Alert
from incidents.integrations.credentials import Integration
from incidents.integrations.payload import MAX_PROVIDER_ID, PayloadError

ALERTMANAGER = "alertmanager"

# Alertmanager's way of saying "no time" (Go's zero time).
ZERO_TIME = "0001-01-01T00:00:00Z"
# Event ids are UUIDv5 in this namespace, from the integration and the origin id.
_NAMESPACE = uuid.UUID("5b0d6a3e-8f7e-4f4c-9a51-6c2f1e0b7a90")


def _mapping(value: object, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(field, "must be an object of strings")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise PayloadError(f"{field}.{key}", "must be a string")
        out[str(key)] = item
    return out


def _time(value: object, field: str, *, required: bool) -> int | None:
    if value is None or value == "" or value == ZERO_TIME:
        if required:
            raise PayloadError(field, "is required (an RFC 3339 time)")
        return None
    if not isinstance(value, str):
        raise PayloadError(field, "must be an RFC 3339 time")
    try:
        micros = parse_micros(value)
    except TimeFormatError as exc:
        raise PayloadError(field, str(exc)) from None
    # Go zero times in other spellings (0001-01-01T00:00:00.000Z, with offsets).
    if micros < 0 and value.startswith("0001-"):
        if required:
            raise PayloadError(field, "is required (an RFC 3339 time, not the zero time)")
        return None
    return micros


def _labels_fingerprint(labels: dict[str, str]) -> str:
    # Alertmanager before 0.19 sent no fingerprint: derive a stable one from the labels.
    canonical = orjson.dumps(sorted(labels.items()))
    return "labels-" + hashlib.sha256(canonical).hexdigest()[:16]


def parse_payload(body: bytes) -> dict[str, Any]:
    """The JSON document of a delivery (PayloadError if it is not a JSON object)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError("body", f"is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PayloadError("body", "must be a JSON object (the Alertmanager webhook payload)")
    return doc


def alerts_from_payload(
    doc: dict[str, Any], integration: Integration, now_us: int | None = None
) -> list[Alert]:
    """One :class:`Alert` per entry of ``alerts[]``; PayloadError names a bad field."""
    version = doc.get("version")
    if version is not None and str(version) != "4":
        raise PayloadError("version", f"must be 4 (the webhook payload version), got {version!r}")
    entries = doc.get("alerts")
    if not isinstance(entries, list):
        raise PayloadError("alerts", "is required: a list of alerts")
    common_labels = _mapping(doc.get("commonLabels"), "commonLabels")
    _mapping(doc.get("groupLabels"), "groupLabels")
    common_annotations = _mapping(doc.get("commonAnnotations"), "commonAnnotations")
    receiver = doc.get("receiver")
    group_key = doc.get("groupKey")
    external_url = doc.get("externalURL")
    now = now_micros() if now_us is None else now_us
    return [
        _alert(
            entry,
            f"alerts[{index}]",
            integration,
            common_labels,
            common_annotations,
            {
                "receiver": receiver if isinstance(receiver, str) else None,
                "groupKey": group_key if isinstance(group_key, str) else None,
                "externalURL": external_url if isinstance(external_url, str) else None,
            },
            now,
        )
        for index, entry in enumerate(entries)
    ]


def _alert(
    entry: object,
    where: str,
    integration: Integration,
    common_labels: dict[str, str],
    common_annotations: dict[str, str],
    delivery: dict[str, str | None],
    now_us: int,
) -> Alert:
    if not isinstance(entry, dict):
        raise PayloadError(where, "must be an object")
    status = entry.get("status")
    if status not in ("firing", "resolved"):
        raise PayloadError(f"{where}.status", f"must be 'firing' or 'resolved', got {status!r}")
    labels = {**common_labels, **_mapping(entry.get("labels"), f"{where}.labels")}
    if not labels:
        raise PayloadError(f"{where}.labels", "is required: an alert is named by its labels")
    annotations = {
        **common_annotations,
        **_mapping(entry.get("annotations"), f"{where}.annotations"),
    }
    starts = _time(entry.get("startsAt"), f"{where}.startsAt", required=True)
    assert starts is not None
    ends = _time(entry.get("endsAt"), f"{where}.endsAt", required=False)
    raw_fingerprint = entry.get("fingerprint")
    if raw_fingerprint is not None and not (isinstance(raw_fingerprint, str) and raw_fingerprint):
        raise PayloadError(f"{where}.fingerprint", "must be a non-empty string")
    if isinstance(raw_fingerprint, str) and (
        len(raw_fingerprint) > MAX_PROVIDER_ID or not raw_fingerprint.isprintable()
    ):
        raise PayloadError(
            f"{where}.fingerprint",
            f"must be printable text of at most {MAX_PROVIDER_ID} characters",
        )
    fingerprint = raw_fingerprint or _labels_fingerprint(labels)
    generator = entry.get("generatorURL")

    firing = status == "firing"
    # The notification is named by what Alertmanager says of it; the start time is kept
    # in integer microseconds so spellings of the same instant agree.
    origin_id = f"alertmanager:{fingerprint}:{starts}:{status}"
    # A resolve is dated by its end; a payload without one by its arrival.
    time_us = starts if firing else (ends if ends is not None else now_us)
    attributes: dict[str, str] = {}
    for attribute, label in (
        ("alert_rule", "alertname"),
        ("service", "service"),
        ("host", "instance"),
        ("severity", "severity"),
        ("error_type", "error_type"),
    ):
        if labels.get(label):
            attributes[attribute] = labels[label]
    document: dict[str, Any] = {
        "fingerprint": fingerprint,
        "alertmanager_status": status,
        "starts_at": entry.get("startsAt"),
        "ends_at": entry.get("endsAt") if ends is not None else None,
        "annotations": annotations,
    }
    if isinstance(generator, str) and generator:
        document["generator_url"] = generator
    document.update({k: v for k, v in delivery.items() if v})
    return Alert(
        provider=ALERTMANAGER,
        key=f"{integration.source}/{fingerprint}",
        event_type=TRIGGER if firing else RESOLVE,
        time_us=time_us,
        event_id=str(uuid.uuid5(_NAMESPACE, f"{integration.source}|{origin_id}")),
        origin_id=origin_id,
        source=integration.source,
        name=labels.get("alertname"),
        severity=labels.get("severity"),
        summary=annotations.get("summary") or annotations.get("description"),
        labels=labels,
        attributes=attributes,
        document=document,
    )
