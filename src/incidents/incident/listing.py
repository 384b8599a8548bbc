"""Incident list queries: the filters a reader may give, and their keyset order.

Lists run newest first, by (declaration time, incident id). A page's cursor carries
the last row's key and a digest of the filters, sealed by the timeline's cursor codec.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from incidents.incident.lifecycle import parse_severity, parse_status
from incidents.log.query import CursorCodec, InvalidQuery

# The parameters a list cursor is bound to, named when a cursor is reused with others.
FILTER_NAMES = "status, severity, service, commander, label and q"
MAX_FILTER_VALUES = 20


@dataclass(frozen=True, slots=True)
class IncidentQuery:
    """Which incidents a list selects (every filter given must match)."""

    statuses: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    service: str | None = None
    commander: str | None = None
    # "key=value" or "key"; an incident must carry every one.
    labels: tuple[str, ...] = ()
    # Case-insensitive text that must occur in the title.
    text: str | None = None

    def digest(self) -> bytes:
        parts = [
            list(self.statuses),
            list(self.severities),
            self.service,
            self.commander,
            list(self.labels),
            self.text,
        ]
        return hashlib.sha256(orjson.dumps(parts)).digest()[:8]


def _split(values: list[str] | None) -> list[str]:
    out = [part.strip() for value in values or [] for part in value.split(",") if part.strip()]
    return out


def incident_query(
    status: list[str] | None = None,
    severity: list[str] | None = None,
    service: str | None = None,
    commander: str | None = None,
    label: list[str] | None = None,
    q: str | None = None,
) -> IncidentQuery:
    """Check and normalise list parameters; raises :class:`InvalidQuery` naming the bad one."""
    statuses = []
    for value in _split(status):
        parsed = parse_status(value)
        if parsed is None:
            raise InvalidQuery(
                "status",
                f"{value!r} is not a status (draft, open, mitigated, resolved, closed, canceled)",
            )
        statuses.append(parsed.value)
    severities = []
    for value in _split(severity):
        parsed_severity = parse_severity(value)
        if parsed_severity is None:
            raise InvalidQuery("severity", f"{value!r} is not a severity (SEV-1 ... SEV-4)")
        severities.append(parsed_severity)
    labels = [value.strip() for value in label or [] if value.strip()]
    for name, values in (("status", statuses), ("severity", severities), ("label", labels)):
        if len(values) > MAX_FILTER_VALUES:
            raise InvalidQuery(name, f"at most {MAX_FILTER_VALUES} values, got {len(values)}")
    text = q.strip().lower() if q and q.strip() else None
    if text is not None and len(text) > 200:
        raise InvalidQuery("q", "at most 200 characters")
    return IncidentQuery(
        statuses=tuple(sorted(set(statuses))),
        severities=tuple(sorted(set(severities))),
        service=service.strip() if service and service.strip() else None,
        commander=commander.strip() if commander and commander.strip() else None,
        labels=tuple(sorted(set(labels))),
        text=text,
    )


def encode_after(
    codec: CursorCodec, query: IncidentQuery, declared_us: int, incident_id: str
) -> str:
    """The cursor for the page after the incident with this key."""
    return codec.seal([declared_us, incident_id], query.digest())


def decode_after(codec: CursorCodec, query: IncidentQuery, token: str) -> tuple[int, str]:
    """The key a list cursor carries, or :class:`InvalidQuery`."""
    key = codec.unseal(token, query.digest(), FILTER_NAMES)
    if len(key) != 2 or not isinstance(key[0], int) or not isinstance(key[1], str):
        raise InvalidQuery("cursor", "is not a cursor of an incident list")
    return key[0], key[1]
