"""The stored shape of a timeline event, one field per column."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

# Column order used by every writer (COPY, INSERT) and every reader (SELECT).
EVENT_COLUMNS: tuple[str, ...] = (
    "position",
    "incident_id",
    "event_id",
    "source",
    "type",
    "subject",
    "time_us",
    "origin_id",
    "actor",
    "recorded_by",
    "visibility",
    "correlation_key",
    "fingerprint",
    "created_us",
    "body",
    "content_hash",
    "prev_hash",
    "hash",
)


class StoredEvent(NamedTuple):
    """One row of ``timeline_events``."""

    position: int
    incident_id: str | None
    event_id: str
    source: str
    type: str
    subject: str | None
    time_us: int
    origin_id: str | None
    actor: str
    recorded_by: str
    visibility: str | None
    correlation_key: str | None
    fingerprint: str | None
    created_us: int
    body: bytes
    content_hash: bytes
    prev_hash: bytes | None
    hash: bytes


class ExistingKey(NamedTuple):
    """What a writer needs to know about an event already holding a dedupe key."""

    event_id: str
    incident_id: str | None
    content_hash: bytes
    # Who stored it and who may see it: decides how much a later caller may learn.
    recorded_by: str
    visibility: str | None


class ChainHead(NamedTuple):
    """The tip of one hash chain."""

    last_position: int
    last_hash: bytes
    event_count: int


# Columns an append writes to ``outbox`` (the id is numbered by the database).
OUTBOX_COLUMNS: tuple[str, ...] = (
    "position",
    "aggregate_id",
    "event_type",
    "destination",
    "created_us",
    "next_attempt_us",
    "attempts",
)


class OutboxEntry(NamedTuple):
    """A new row of ``outbox``: one created event for one destination.

    It names the event by position; the relay renders it when it delivers.
    """

    position: int
    aggregate_id: str | None
    event_type: str
    destination: str
    created_us: int
    next_attempt_us: int
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class OutboxRoute:
    """An outbox destination and the events it takes.

    ``takes`` sees an event's type and whether it belongs to an incident; None takes
    every event. Events a destination would only settle and skip (alerts, for a
    ticket connector) get no row at all, so an alert storm writes one outbox row per
    alert for the bus, not one per connector.
    """

    destination: str
    takes: Callable[[str, bool], bool] | None = None

    def wants(self, event_type: str, incident_id: str | None) -> bool:
        return self.takes is None or self.takes(event_type, incident_id is not None)
