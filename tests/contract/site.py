"""A server under test, and users made with chosen grants (policy and board tests)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from incidents.app import Container, build_container, create_app
from tests.conftest import grant_access, make_settings

READER_ROLES = ("timeline.reader", "timeline.writer", "timeline.exporter")


class Site:
    """One server, and users made with chosen grants."""

    def __init__(
        self, container: Container, client: TestClient, roles: tuple[str, ...] = READER_ROLES
    ) -> None:
        self.container = container
        self.client = client
        self._roles = roles

    def user(
        self,
        roles: tuple[str, ...] | None = None,
        attributes: tuple[str, ...] = (),
        clearance: str | None = None,
    ) -> dict[str, str]:
        """Authorization headers of a new user with these grants (the site's default
        roles unless ``roles`` is given)."""
        email = f"u-{uuid.uuid4().hex[:10]}@example.com"
        grant_access(
            self.container, email, self._roles if roles is None else roles, attributes, clearance
        )
        _, token = self.container.tokens.create(email)
        return {"Authorization": f"Bearer {token}"}

    def append(self, headers: dict[str, str], events: list[dict[str, Any]]) -> None:
        """Append a batch through the API; every event must be created."""
        resp = self.client.post(
            "/api/v1/timeline/events",
            json=events,
            headers={**headers, "Content-Type": "application/cloudevents-batch+json"},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["created"] == len(events)

    def board(self, headers: dict[str, str], incident_id: str, persona: str) -> Any:
        """The incident's status board for ``persona``, as the API answers."""
        return self.client.get(
            f"/api/v1/incidents/{incident_id}/board", params={"persona": persona}, headers=headers
        )


def running_site(
    database_url: str, roles: tuple[str, ...] = READER_ROLES, **overrides: Any
) -> Iterator[Site]:
    """A site on ``database_url`` with settings ``overrides``, for the length of a test."""
    container = build_container(make_settings(database_url, policy_cache_seconds=0, **overrides))
    with TestClient(create_app(container)) as client:
        yield Site(container, client, roles)
