"""Outbox destinations: where the relay delivers rows. The bus is the first.

A destination is a plug-in behind one small interface, so that ITSM and chat
connectors can be added beside the bus without touching the relay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from incidents.bus.message import Bus, BusMessage
from incidents.store.outbox_store import OutboxRecord


class RetryAfter(Exception):
    """A delivery the far side asked to retry no sooner than ``seconds`` from now (an
    HTTP 429 or 503 with Retry-After); the relay waits at least that long."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = max(0.0, seconds)


class Destination(Protocol):
    """Delivers outbox rows somewhere."""

    @property
    def name(self) -> str:
        """The value of the ``destination`` column this destination drains."""
        ...

    def deliver(self, rows: Sequence[OutboxRecord]) -> list[Exception | None]:
        """Deliver ``rows``; one result per row, in order: None when delivered, else
        the error (the row is retried later). Delivering a row twice must be harmless:
        delivery is at least once."""
        ...


class BusDestination:
    """Publishes each row's CloudEvent on the bus (``destination = "bus"``)."""

    name = "bus"

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def deliver(self, rows: Sequence[OutboxRecord]) -> list[Exception | None]:
        messages = [
            BusMessage(row.payload, row.event_id, row.event_type, row.position) for row in rows
        ]
        return self._bus.publish_many(messages)
