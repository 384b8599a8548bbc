"""Building the bus and the outbox relay from the settings (for the container and
``incidents worker``)."""

from __future__ import annotations

import re
import socket

from sqlalchemy import Engine

from incidents.bus.destination import BusDestination, Destination
from incidents.bus.jetstream import NatsBus
from incidents.bus.memory import InProcessBus
from incidents.bus.message import Bus
from incidents.bus.relay import OutboxRelay, RetryPolicy
from incidents.config import Settings, outbox_destinations
from incidents.store.engine import Backend
from incidents.store.outbox_store import OutboxStore

_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]")


def default_consumer_name(port: int) -> str:
    """This instance's durable consumer name: ``<hostname>-<port>``."""
    return _NOT_IN_NAME.sub("_", f"{socket.gethostname()}-{port}")


def build_bus(settings: Settings, *, consume: bool = True) -> Bus:
    """The bus the settings choose: NATS JetStream when IM_NATS_URL is set, else in-process.

    ``consume=False`` (``incidents worker``) publishes only: no durable consumer.
    """
    if not settings.nats_url:
        return InProcessBus()
    consumer = settings.nats_consumer or default_consumer_name(settings.port)
    return NatsBus(
        settings.nats_url,
        stream=settings.nats_stream,
        subject_prefix=settings.nats_subject_prefix,
        consumer=consumer if consume else None,
        duplicate_window_seconds=settings.nats_duplicate_window_seconds,
    )


def build_destinations(settings: Settings, bus: Bus) -> list[Destination]:
    """The configured outbox destinations (see IM_OUTBOX_DESTINATIONS)."""
    known: dict[str, Destination] = {"bus": BusDestination(bus)}
    return [known[name] for name in outbox_destinations(settings)]


def build_relay(settings: Settings, engine: Engine, backend: Backend, bus: Bus) -> OutboxRelay:
    """A relay draining the configured destinations with the configured retry policy."""
    return OutboxRelay(
        OutboxStore(
            engine,
            backend,
            settings.outbox_lease_seconds,
            keep_delivered=settings.outbox_retention_seconds > 0,
        ),
        build_destinations(settings, bus),
        retry=RetryPolicy(
            max_attempts=settings.outbox_max_attempts,
            base_seconds=settings.outbox_backoff_base_seconds,
            cap_seconds=settings.outbox_backoff_cap_seconds,
        ),
        batch_size=settings.outbox_batch_size,
        poll_seconds=settings.outbox_poll_seconds,
        retention_seconds=settings.outbox_retention_seconds,
    )
