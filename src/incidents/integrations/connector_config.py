"""The ``connectors:`` section of ``IM_CONFIG``: the parts every ITSM vendor shares.

```yaml
connectors:
  servicenow:
    - name: prod
      instance_url: https://acme.service-now.com
      ...
  jira:
    - name: cloud
      ...
```

Each vendor folder parses its own keys (URLs, credentials) with the helpers here;
every error names the key at fault, and no message ever holds a credential.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from incidents.incident.lifecycle import SEVERITIES, parse_severity
from incidents.sync.connector import Connector
from incidents.sync.mapping import FieldMapping, MappingError, parse_field_mappings
from incidents.sync.ports import Ticketing

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ConnectorsError(ValueError):
    """The connectors section cannot be used; the message names the key at fault."""


@dataclass(frozen=True, slots=True)
class ParsedConnector:
    """One configured connector: the engine's view and how to open its client."""

    connector: Connector
    # Opens the vendor client (HTTP); called once by the composition root.
    open_client: Callable[[], Ticketing]
    # The base URL (shown by GET /api/v1/connectors; never holds credentials).
    base_url: str
    # Jira: the webhook signing secret (None where the vendor sends none).
    webhook_secret: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"ParsedConnector({self.connector.id})"


@dataclass(frozen=True, slots=True)
class Connectors:
    """Every configured connector, by id (``vendor:name``)."""

    entries: tuple[ParsedConnector, ...] = ()

    def get(self, connector_id: str) -> ParsedConnector | None:
        return next((e for e in self.entries if e.connector.id == connector_id), None)

    @property
    def ids(self) -> list[str]:
        return [e.connector.id for e in self.entries]


Entry = Mapping[str, Any]


def check_keys(entry: Entry, known: set[str], where: str) -> None:
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConnectorsError(
            f"{where}.{unknown[0]}: unknown key; known: {', '.join(sorted(known))}"
        )


def text(entry: Entry, key: str, where: str, *, required: bool = True) -> str | None:
    value = entry.get(key)
    if value is None:
        if required:
            raise ConnectorsError(f"{where}.{key}: required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConnectorsError(f"{where}.{key}: expected a non-empty string")
    return value.strip()


def base_url(entry: Entry, key: str, where: str) -> str:
    value = text(entry, key, where)
    assert value is not None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectorsError(f"{where}.{key}: expected an http(s) URL")
    if parts.username or parts.password:
        raise ConnectorsError(f"{where}.{key}: put credentials in their own keys, not the URL")
    return value.rstrip("/")


def number(entry: Entry, key: str, where: str, default: float, low: float, high: float) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConnectorsError(f"{where}.{key}: expected a number")
    if not low <= float(value) <= high:
        raise ConnectorsError(f"{where}.{key}: must be between {low:g} and {high:g}")
    return float(value)


COMMON_KEYS = {
    "name",
    "identity",
    "poll_seconds",
    "overlap_seconds",
    "field_mappings",
    "create_for_severities",
    "sync_notes",
    "timeout_seconds",
    "reconcile_seconds",
    "correlation_prefix",
}
_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{0,32}$")


def common(vendor: str, entry: Entry, where: str, defaults: tuple[FieldMapping, ...]) -> Connector:
    """The vendor-neutral part of one entry."""
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConnectorsError(
            f"{where}.name: required; lowercase letters, digits, - and _ (up to 63)"
        )
    identity = text(entry, "identity", where, required=False) or f"{vendor}-{name}@connectors"
    try:
        mappings = parse_field_mappings(
            entry.get("field_mappings"), defaults, f"{where}.field_mappings"
        )
    except MappingError as exc:
        raise ConnectorsError(str(exc)) from None
    severities_raw = entry.get("create_for_severities", list(SEVERITIES))
    if not isinstance(severities_raw, list):
        raise ConnectorsError(f"{where}.create_for_severities: expected a list of severities")
    severities = set()
    for item in severities_raw:
        parsed = parse_severity(item)
        if parsed is None:
            raise ConnectorsError(
                f"{where}.create_for_severities: {item!r} is not a severity (SEV-1 ... SEV-4)"
            )
        severities.add(parsed)
    notes = entry.get("sync_notes", True)
    if not isinstance(notes, bool):
        raise ConnectorsError(f"{where}.sync_notes: expected true or false")
    return Connector(
        vendor=vendor,
        name=name,
        mappings=mappings,
        identity=identity,
        poll_seconds=number(entry, "poll_seconds", where, 30.0, 1.0, 3600.0),
        overlap_seconds=number(entry, "overlap_seconds", where, 60.0, 0.0, 3600.0),
        create_severities=frozenset(severities),
        sync_notes=notes,
        reconcile_seconds=_sweep(entry, where),
        correlation_prefix=_prefix(entry, where),
    )


def _prefix(entry: Entry, where: str) -> str:
    value = entry.get("correlation_prefix", "")
    if not isinstance(value, str) or not _PREFIX.match(value):
        raise ConnectorsError(
            f"{where}.correlation_prefix: up to 32 letters, digits, '.', ':', '_' or '-'"
        )
    return value


def _sweep(entry: Entry, where: str) -> float:
    value = number(entry, "reconcile_seconds", where, 3600.0, 0.0, 7 * 86400.0)
    if 0 < value < 60:
        raise ConnectorsError(f"{where}.reconcile_seconds: 0 (off) or at least 60")
    return value


# vendor -> parser of one entry (entry, where) -> ParsedConnector
Parser = Callable[[Entry, str], ParsedConnector]


def parse_connectors(doc: object, parsers: Mapping[str, Parser]) -> Connectors:
    """Validate the ``connectors`` section against the vendors this build knows."""
    if doc is None:
        return Connectors()
    if not isinstance(doc, dict):
        raise ConnectorsError("connectors: expected a mapping of vendor names")
    entries: list[ParsedConnector] = []
    seen: set[str] = set()
    for vendor, items in doc.items():
        if vendor not in parsers:
            raise ConnectorsError(
                f"connectors.{vendor}: unknown vendor; known: {', '.join(sorted(parsers))}"
            )
        if not isinstance(items, list):
            raise ConnectorsError(f"connectors.{vendor}: expected a list of connections")
        for index, item in enumerate(items):
            where = f"connectors.{vendor}[{index}]"
            if not isinstance(item, dict):
                raise ConnectorsError(f"{where}: expected a mapping")
            parsed = parsers[vendor](item, where)
            if parsed.connector.id in seen:
                raise ConnectorsError(f"{where}.name: {parsed.connector.name!r} is used twice")
            seen.add(parsed.connector.id)
            entries.append(parsed)
    return Connectors(tuple(entries))
