"""Helpers for the ITSM sync tests: a container wired to local vendor servers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from incidents.app import Container, build_container
from incidents.incident.commands import Declare
from incidents.store.outbox_store import OutboxStore
from tests.conftest import grant_access, make_settings

SN_IDENTITY = "servicenow-prod@connectors"
SN = "servicenow:prod"


def sn_entry(url: str, **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "prod",
        "instance_url": url,
        "username": "svc-incidents",
        "password": "s3cret-pass",
        "poll_seconds": 3600,
        "overlap_seconds": 5,
    }
    entry.update(overrides)
    return entry


def sync_container(
    database_url: str,
    connectors: dict[str, Any],
    identities: dict[str, tuple[str, ...]] | None = None,
) -> Container:
    """A started container whose relay and poller the test drives by hand."""
    settings = make_settings(
        database_url,
        connectors=connectors,
        outbox_backoff_base_seconds=0.01,
        outbox_backoff_cap_seconds=0.02,
    )
    container = build_container(settings)
    container.start()
    assert container.relay is not None and container.poller is not None
    container.relay.stop()
    container.poller.stop()
    for identity, attributes in (identities or {SN_IDENTITY: ()}).items():
        grant_access(container, identity, roles=("incident.reader",), attributes=attributes)
    return container


def drain(container: Container) -> int:
    assert container.relay is not None
    return container.relay.drain()


def pending(container: Container, destination: str) -> int:
    store = OutboxStore(container.engine, container.backend, 60.0)
    return store.counts_for(destination)["pending"]


def dead(container: Container, destination: str) -> int:
    store = OutboxStore(container.engine, container.backend, 60.0)
    return store.counts_for(destination)["dead"]


def declare(container: Container, title: str = "Checkout down", **kw: Any) -> str:
    kw.setdefault("severity", "SEV-2")
    result = container.incidents.execute(Declare(title=title, actor="alice@example.com", **kw))
    return str(result.incident.id)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
