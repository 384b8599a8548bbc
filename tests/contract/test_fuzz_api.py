"""Fuzzing the HTTP API from its own OpenAPI description: no input may cause a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from incidents.app import build_container, create_app
from tests.conftest import event, grant_access, make_settings


@pytest.fixture
def fuzz_target(database_url: str) -> Iterator[tuple[Any, dict[str, str]]]:
    container = build_container(make_settings(database_url))
    grant_access(
        container,
        "fuzz@example.com",
        roles=(
            "timeline.reader",
            "timeline.writer",
            "timeline.exporter",
            "incident.commander",
            "admin",
        ),
    )
    _, token = container.tokens.create("fuzz@example.com")
    auth = {"Authorization": f"Bearer {token}"}
    app = create_app(container)
    with TestClient(app) as client:
        # Something to find: incidents and events the fuzzer's ids may hit.
        for title in ("Checkout errors", "Search slow"):
            client.post("/api/v1/incidents", json={"title": title}, headers=auth)
        client.post(
            "/api/v1/timeline/events",
            json=[event(i, incident="INC-1") for i in range(3)],
            headers={**auth, "Content-Type": "application/cloudevents-batch+json"},
        )
        yield schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, headers=auth), auth


def test_no_input_causes_a_server_error(fuzz_target: tuple[Any, dict[str, str]]) -> None:
    """Every operation of the OpenAPI document, with generated parameters and bodies."""
    schema, auth = fuzz_target
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def exercise(case: Any) -> None:
            case.call_and_validate(headers=auth, checks=[not_a_server_error])

        exercise()
