"""What travels on the bus, and the interface every bus adapter offers."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

DEFAULT_SUBJECT_PREFIX = "incidents.events"

# NATS subject tokens are separated by dots and may not be empty or hold wildcards
# or whitespace; CloudEvent types may hold any of these.
_UNSAFE = re.compile(r"[\s*>]")


@dataclass(frozen=True, slots=True)
class BusMessage:
    """One event on the bus: its structured-mode CloudEvent JSON and how to route it."""

    payload: bytes
    event_id: str
    type: str
    # The event's log position (0 when unknown): consumers resume and order by it.
    position: int


def subject_for(event_type: str, prefix: str = DEFAULT_SUBJECT_PREFIX) -> str:
    """The subject an event type is published on (``im.incident.declare`` ->
    ``incidents.events.im.incident.declare``)."""
    tokens = [_UNSAFE.sub("_", token) or "_" for token in event_type.split(".")]
    return f"{prefix}.{'.'.join(tokens)}"


# Receives each message; called on a bus thread, so it must be quick and not block.
Listener = Callable[[BusMessage], None]


class Subscription(Protocol):
    """A registered listener; ``close`` stops its deliveries."""

    def close(self) -> None: ...


class Bus(Protocol):
    """Publishes events and delivers every published event to this process's listeners.

    Thread-safe: the outbox relay publishes from its own thread, and listeners may be
    added and removed from any thread.
    """

    def start(self) -> None:
        """Connect (and create what the bus needs on its server, if anything)."""
        ...

    def close(self) -> None:
        """Disconnect; listeners receive nothing more."""
        ...

    def publish(self, message: BusMessage) -> None:
        """Publish one message; raises when the bus did not accept it."""
        ...

    def publish_many(self, messages: Sequence[BusMessage]) -> list[Exception | None]:
        """Publish several messages; one result per message (None when accepted)."""
        ...

    def subscribe(self, listener: Listener) -> Subscription:
        """Deliver every message that reaches this process to ``listener``.

        Delivery is at least once and in publication order per publisher only: a
        listener that must not see an event twice drops repeats by ``position``.
        """
        ...
