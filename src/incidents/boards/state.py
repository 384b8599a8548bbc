"""A board's state: what one incident's timeline says a status board shows, kept small.

The board does not copy event content. It records counts, the classes of data the
timeline holds, the hash chain as it was checked when each event was folded, and the
*positions* of the few events a board shows (the latest per visibility). A board is
rendered by loading those few rows and passing them through the one redaction path,
so its cost does not grow with the timeline and no reader sees content their
decision does not open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from incidents.log.chain import GENESIS, event_hash
from incidents.log.records import StoredEvent

# How many positions each list keeps per visibility: enough for a board, and bounded
# however long the timeline grows.
KEY_ENTRIES = 20
ESCALATIONS = 10
LINKS = 10

# Events a board lists among its key entries.
KEY_TYPES = frozenset(
    {
        "im.incident.declare",
        "im.incident.acknowledge",
        "im.incident.escalate",
        "im.incident.state_change",
        "im.incident.mitigate",
        "im.incident.resolve",
        "im.incident.close",
        "im.incident.cancel",
        "im.incident.reopen",
        "im.incident.role.assign",
        "im.incident.assign",
        "im.incident.update",
        "im.incident.merge",
        "im.note.add",
        "im.status_update.post",
    }
)
STATUS_UPDATE = "im.status_update.post"
ALERT_PREFIX = "im.alert."
# Ticket synchronisation events (im.jira.sync, im.servicenow.sync, ...).
TICKET_SUFFIX = ".sync"


def visibility_of(row: StoredEvent) -> str:
    """An event's visibility; an event that names none is public."""
    return row.visibility or "public"


def _push(lists: dict[str, list[Any]], visibility: str, item: Any, keep: int) -> None:
    items = lists.setdefault(visibility, [])
    items.append(item)
    if len(items) > keep:
        del items[: len(items) - keep]


def _push_keyed(
    lists: dict[str, list[list[Any]]], visibility: str, key: str, position: int, keep: int
) -> None:
    """Latest position per key (an alert, a ticket), the most recently touched last."""
    items = [item for item in lists.get(visibility, []) if item[0] != key]
    items.append([key, position])
    lists[visibility] = items[-keep:]


def data_classes_of(body: dict[str, Any]) -> list[str]:
    """The data classes an event's body is tagged with (list or map form)."""
    tags = body.get("data_class")
    if isinstance(tags, list):
        return sorted({t for t in tags if isinstance(t, str)})
    if isinstance(tags, dict):
        return sorted({t for t in tags if isinstance(t, str)})
    return []


def _link_key(data: object, fallback: str) -> str:
    if isinstance(data, dict):
        for name in ("key", "ticket", "ticket_id", "issue", "id", "number"):
            value = data.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
        alert = data.get("alert")
        if isinstance(alert, dict) and isinstance(alert.get("key"), str):
            return str(alert["key"])
    return fallback


@dataclass(slots=True)
class Chain:
    """The incident's hash chain as checked event by event while folding."""

    linked: int = 0
    intact: bool = True
    broken_at: int | None = None
    tip: str = ""


@dataclass(slots=True)
class BoardState:
    """One incident's board, as folded from its timeline."""

    incident_id: str
    events: int = 0
    first_us: int | None = None
    last_us: int | None = None
    last_position: int = 0
    # Events per visibility (a reader's count is the sum over what they may see).
    visibilities: dict[str, int] = field(default_factory=dict)
    # Events tagged with each data class, and how many carry any tag at all.
    data_classes: dict[str, int] = field(default_factory=dict)
    tagged: int = 0
    # Positions of the key entries, escalations and latest status update, per visibility.
    key: dict[str, list[int]] = field(default_factory=dict)
    escalations: dict[str, list[int]] = field(default_factory=dict)
    updates: dict[str, int] = field(default_factory=dict)
    # [alert key, latest position] and [ticket key, latest position], per visibility.
    alerts: dict[str, list[list[Any]]] = field(default_factory=dict)
    tickets: dict[str, list[list[Any]]] = field(default_factory=dict)
    chain: Chain = field(default_factory=Chain)

    @property
    def legal_hold(self) -> bool:
        """Whether any event is tagged with the legal-hold class."""
        return self.data_classes.get("legal_hold", 0) > 0

    def fold(
        self, row: StoredEvent, data: object, classes: list[str], *, rehash: bool = True
    ) -> None:
        """Apply one stored event of this incident (``data`` its decoded data).

        ``rehash`` recomputes the event's hash from its columns; the append path passes
        False for rows its writer has just hashed (the link is still checked)."""
        visibility = visibility_of(row)
        self.events += 1
        self.first_us = row.time_us if self.first_us is None else min(self.first_us, row.time_us)
        self.last_us = row.time_us if self.last_us is None else max(self.last_us, row.time_us)
        self.last_position = row.position
        self.visibilities[visibility] = self.visibilities.get(visibility, 0) + 1
        if classes:
            self.tagged += 1
            for cls in classes:
                self.data_classes[cls] = self.data_classes.get(cls, 0) + 1
        kind = row.type
        if kind in KEY_TYPES:
            _push(self.key, visibility, row.position, KEY_ENTRIES)
        if kind == "im.incident.escalate":
            _push(self.escalations, visibility, row.position, ESCALATIONS)
        if kind == STATUS_UPDATE:
            self.updates[visibility] = row.position
        if kind.startswith(ALERT_PREFIX):
            key = _link_key(data, row.fingerprint or row.event_id)
            _push_keyed(self.alerts, visibility, key, row.position, LINKS)
        elif kind.endswith(TICKET_SUFFIX):
            key = _link_key(data, row.event_id)
            _push_keyed(self.tickets, visibility, key, row.position, LINKS)
        self._check_link(row, rehash)

    def _check_link(self, row: StoredEvent, rehash: bool) -> None:
        # The chain is checked as it grows: each event must name the tip before it and
        # carry the hash its columns give. A rebuild checks the stored log again.
        prev = bytes(row.prev_hash) if row.prev_hash is not None else GENESIS
        tip = bytes.fromhex(self.chain.tip) if self.chain.tip else GENESIS
        stored = bytes(row.hash)
        if self.chain.intact and (prev != tip or (rehash and event_hash(prev, row) != stored)):
            self.chain.intact = False
            self.chain.broken_at = row.position
        self.chain.linked += 1
        self.chain.tip = stored.hex()

    def to_json(self) -> bytes:
        return orjson.dumps(self, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, raw: bytes) -> BoardState:
        doc = orjson.loads(raw)
        doc["chain"] = Chain(**doc.get("chain", {}))
        return cls(**doc)
