"""Data-subject erasure of fields in one event's body (GDPR Article 17).

A field is named by a JSON path into the event's ``data`` (``customer.email``,
``contacts.0.phone``). Its value is replaced by a marker; the rest of the body stays
byte-for-byte meaningful. The event keeps its hash and links; its erasure tombstone
records the digest before and after so verification can tell exactly what changed.
"""

from __future__ import annotations

from typing import Any

import orjson

ERASED = "[ERASED]"

# Fields that identify rather than describe: the alert an alert event is about, the
# correlation groups it opened, the incidents a merge joins and the alerts it moved.
# Projections are keyed and counted by them, so they are not personal data to erase.
_IDENTIFYING: dict[str, tuple[str, ...]] = {
    "im.alert.trigger": ("alert.key", "correlation"),
    "im.alert.acknowledge": ("alert.key", "correlation"),
    "im.alert.resolve": ("alert.key", "correlation"),
    "im.incident.merge": ("into", "from", "alerts", "firing_alerts"),
}


class ErasureError(ValueError):
    """A path that names nothing in the event, or a body that is not JSON data."""


def _split(path: str) -> list[str]:
    parts = [p for p in path.split(".") if p]
    if not parts:
        raise ErasureError(f"field path {path!r} is empty")
    return parts


def check_erasable(event_type: str, paths: list[str]) -> None:
    """Refuse paths that name (or contain) a field identifying what the event is about."""
    for path in paths:
        parts = _split(path)
        for protected in _IDENTIFYING.get(event_type, ()):
            named = protected.split(".")
            if parts[: len(named)] == named or named[: len(parts)] == parts:
                raise ErasureError(
                    f"field {path!r} identifies what a {event_type} event is about "
                    f"({protected}); it cannot be erased"
                )


def erase_fields(body: bytes, paths: list[str]) -> bytes:
    """``body`` with the values at ``paths`` (inside ``data``) replaced by ERASED."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ErasureError("the event's body is not JSON") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict | list):
        raise ErasureError("the event has no structured data to erase fields from")
    for path in paths:
        _replace(data, _split(path), path)
    return orjson.dumps(document)


def _replace(node: Any, parts: list[str], path: str) -> None:
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, dict) and part in node:
            if last:
                node[part] = ERASED
                return
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            if last:
                node[int(part)] = ERASED
                return
            node = node[int(part)]
        else:
            raise ErasureError(f"field {path!r} is not in the event's data")
