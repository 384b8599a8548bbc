"""Fixtures shared by the contract tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from incidents.app import Container
from tests.contract.sync_support import sn_entry, sync_container
from tests.fakes.servicenow import FakeServiceNow


@pytest.fixture
def synced(database_url: str, snow: FakeServiceNow) -> Iterator[Container]:
    """A started container with one ServiceNow connector on the local Table API; the
    test drives its relay and poller by hand."""
    container = sync_container(database_url, {"servicenow": [sn_entry(snow.url)]})
    try:
        yield container
    finally:
        container.close()
