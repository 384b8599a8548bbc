"""GraphQL: queries with the REST filters, policy and redaction, and live subscriptions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from incidents.app import Container, build_container, create_app
from tests.conftest import event, grant_access, stream_settings

INCIDENT = """
query One($id: ID!) {
  incident(id: $id) {
    id title severity status service labels { key value }
    timeline(limit: 10) { id eventType actor position data }
    statusBoard(persona: COMMANDER) { persona sections }
    connectedTickets { system key }
  }
}
"""


@dataclass
class Site:
    client: TestClient
    container: Container
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def gql(self, query: str, who: str = "cora", **variables: Any) -> dict[str, Any]:
        response = self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=self.auth(who)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def declare(self, **fields: Any) -> str:
        response = self.client.post("/api/v1/incidents", json=fields, headers=self.auth("cora"))
        assert response.status_code == 201, response.text
        incident_id: str = response.json()["id"]
        return incident_id


@pytest.fixture
def site(database_url: str) -> Iterator[Site]:
    container = build_container(stream_settings(database_url))
    grant_access(container, "cora@example.com", ("incident.commander",))
    grant_access(container, "rita@example.com", ("incident.reader",), attributes=())
    tokens = {
        "cora": container.tokens.create("cora@example.com")[1],
        "rita": container.tokens.create("rita@example.com")[1],
    }
    grant_access(container, "sam@example.com", ("incident.reader",))
    sam, tokens["sam"] = container.tokens.create("sam@example.com")
    tokens["sam-id"] = sam.token_id
    with TestClient(create_app(container)) as client:
        yield Site(client, container, tokens)


def test_incident_query_with_timeline(site: Site) -> None:
    site.declare(title="Checkout errors", severity="SEV-2", service="checkout", labels={"t": "p"})
    site.client.post(
        "/api/v1/incidents/INC-1/notes", json={"text": "rolled back"}, headers=site.auth("cora")
    )
    body = site.gql(INCIDENT, id="INC-1")
    assert "errors" not in body, body
    incident = body["data"]["incident"]
    assert incident["id"] == "INC-1" and incident["severity"] == "SEV_2"
    assert incident["status"] == "OPEN" and incident["labels"] == [{"key": "t", "value": "p"}]
    assert [e["eventType"] for e in incident["timeline"]] == ["im.incident.declare", "im.note.add"]
    assert incident["timeline"][1]["data"] == {"incident_id": "INC-1", "text": "rolled back"}
    board = incident["statusBoard"]
    assert board["persona"] == "COMMANDER"
    sections = {s["name"]: s["value"] for s in board["sections"]}
    assert sections["status"] == "open" and sections["roles"] == {}
    assert [e["event_type"] for e in sections["key_entries"]] == [
        "im.note.add",
        "im.incident.declare",
    ]
    assert incident["connectedTickets"] == []
    offset = site.gql(
        'query { incident(id: "INC-1") { timeline(limit: 1, offset: 1) { eventType } } }'
    )
    assert offset["data"]["incident"]["timeline"] == [{"eventType": "im.note.add"}]
    filtered = site.gql(
        'query { incident(id: "INC-1") { a: timeline(type: ["im.note.*"]) { eventType } '
        'b: timeline(order: "desc", limit: 1) { eventType } '
        'c: timeline(from: "2999-01-01T00:00:00Z") { eventType } } }'
    )["data"]["incident"]
    assert filtered == {
        "a": [{"eventType": "im.note.add"}],
        "b": [{"eventType": "im.note.add"}],
        "c": [],
    }
    bad = site.gql('query { incident(id: "INC-1") { timeline(from: "yesterday") { id } } }')
    assert "from" in bad["errors"][0]["message"]


def test_incidents_query_filters_and_pages(site: Site) -> None:
    for n in range(5):
        site.declare(title=f"outage {n}", severity=f"SEV-{n % 2 + 1}")
    query = """
    query Page($after: String, $severity: [Severity!]) {
      incidents(limit: 2, after: $after, severity: $severity) { items { id } nextCursor }
    }"""
    ids: list[str] = []
    after = None
    while True:
        page = site.gql(query, after=after)["data"]["incidents"]
        ids += [i["id"] for i in page["items"]]
        after = page["nextCursor"]
        if after is None:
            break
    assert ids == ["INC-5", "INC-4", "INC-3", "INC-2", "INC-1"]
    sev1 = site.gql(query, severity=["SEV_1"])["data"]["incidents"]["items"]
    assert [i["id"] for i in sev1] == ["INC-5", "INC-3"]
    bad = site.gql(query, after="garbage")
    assert "cursor" in bad["errors"][0]["message"]


def test_policy_and_redaction_apply(site: Site) -> None:
    site.declare(title="Public")
    site.declare(title="Secret", classification="confidential")
    writer = site.auth("cora")
    site.client.post(
        "/api/v1/timeline/events",
        json=event("pii", incident="INC-1", data={"reporter_email": "MK-PII-RULE"}),
        headers={**writer, "Content-Type": "application/cloudevents+json"},
    )
    assert site.gql(INCIDENT, who="rita", id="INC-2")["data"]["incident"] is None
    listed = site.gql("query { incidents { items { id } } }", who="rita")
    assert [i["id"] for i in listed["data"]["incidents"]["items"]] == ["INC-1"]
    seen = orjson.dumps(site.gql(INCIDENT, who="rita", id="INC-1")).decode()
    assert "MK-PII-RULE" not in seen and "[REDACTED]" in seen
    assert "MK-PII-RULE" in orjson.dumps(site.gql(INCIDENT, id="INC-1")).decode()
    anonymous = site.client.post("/graphql", json={"query": "{ incidents { items { id } } }"})
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/problem+json")


def _subscribe(ws: Any, query: str, variables: dict[str, Any]) -> None:
    ws.send_json({"type": "connection_init", "payload": {}})
    assert ws.receive_json()["type"] == "connection_ack"
    ws.send_json(
        {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}
    )


def _registered(site: Site, count: int = 1) -> None:
    """Wait until the live feed has the subscription (it registers asynchronously)."""
    deadline = time.monotonic() + 10
    while site.container.feed.subscribers < count:
        assert time.monotonic() < deadline, "the subscription never registered"
        time.sleep(0.01)


def _next(ws: Any) -> dict[str, Any]:
    while True:
        message = ws.receive_json()
        if message["type"] == "next":
            payload: dict[str, Any] = message["payload"]
            return payload
        assert message["type"] in ("ping", "pong"), message


def test_subscriptions_follow_appends_and_respect_policy(site: Site) -> None:
    site.declare(title="Checkout errors")
    headers = site.auth("cora")
    with site.client.websocket_connect(
        "/graphql", subprotocols=["graphql-transport-ws"], headers=headers
    ) as ws:
        _subscribe(
            ws,
            "subscription S($id: ID!) { timelineEventAdded(incidentId: $id) { eventType data } }",
            {"id": "INC-1"},
        )
        _registered(site)
        site.client.post("/api/v1/incidents/INC-1/acknowledge", json={}, headers=headers)
        first = _next(ws)
        assert first["data"]["timelineEventAdded"]["eventType"] == "im.incident.acknowledge"
    # A closed connection ends its subscription.
    deadline = time.monotonic() + 10
    while site.container.feed.subscribers:
        assert time.monotonic() < deadline, "the subscription outlived its connection"
        time.sleep(0.01)
    with site.client.websocket_connect(
        "/graphql", subprotocols=["graphql-transport-ws"], headers=headers
    ) as ws:
        _subscribe(
            ws,
            "subscription S($id: ID!) { incidentUpdated(id: $id) { id status } }",
            {"id": "INC-1"},
        )
        _registered(site)
        site.client.post(
            "/api/v1/incidents/INC-1/status", json={"status": "mitigated"}, headers=headers
        )
        updated = _next(ws)["data"]["incidentUpdated"]
        assert updated == {"id": "INC-1", "status": "MITIGATED"}


def test_a_board_subscription_follows_the_incident(site: Site) -> None:
    site.declare(title="Checkout errors")
    headers = site.auth("cora")
    with site.client.websocket_connect(
        "/graphql", subprotocols=["graphql-transport-ws"], headers=headers
    ) as ws:
        _subscribe(
            ws,
            "subscription S($id: ID!) { statusBoardUpdated(incidentId: $id, persona: EXECUTIVE)"
            " { persona board } }",
            {"id": "INC-1"},
        )
        _registered(site)
        site.client.post(
            "/api/v1/incidents/INC-1/status", json={"status": "mitigated"}, headers=headers
        )
        updated = _next(ws)["data"]["statusBoardUpdated"]
        assert updated["persona"] == "EXECUTIVE"
        assert updated["board"]["status"] == "mitigated"
        assert " is monitoring;" in updated["board"]["summary"]


def test_a_subscription_ends_when_its_token_is_revoked(site: Site) -> None:
    site.declare(title="Checkout errors")
    with site.client.websocket_connect(
        "/graphql", subprotocols=["graphql-transport-ws"], headers=site.auth("sam")
    ) as ws:
        _subscribe(
            ws,
            "subscription S($id: ID!) { timelineEventAdded(incidentId: $id) { eventType } }",
            {"id": "INC-1"},
        )
        _registered(site)
        site.container.tokens.revoke(site.tokens["sam-id"])
        while True:
            message = ws.receive_json()
            if message["type"] == "complete":
                break
            assert message["type"] in ("ping", "pong"), message
    assert site.container.feed.subscribers == 0


def test_an_unexpected_resolver_error_is_masked(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.declare(title="Checkout errors")

    def broken(incident_id: str) -> None:
        raise RuntimeError('relation "incidents" does not exist: SELECT state FROM incidents')

    monkeypatch.setattr(site.container.incidents.reader, "get", broken)
    body = site.gql(INCIDENT, id="INC-1")
    assert body["errors"][0]["message"] == "Internal error."
    assert "SELECT" not in orjson.dumps(body).decode()
    # What a resolver says on purpose still reaches the client.
    bad = site.gql("{ incidents(limit: 0) { items { id } } }")
    assert "limit must be between 1 and" in bad["errors"][0]["message"]


def test_a_graphql_body_over_the_limit_is_a_413(site: Site) -> None:
    limit = site.container.settings.max_event_bytes
    query = "{ incidents { items { id } } }" + " " * limit
    response = site.client.post("/graphql", json={"query": query}, headers=site.auth("cora"))
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["limit_bytes"] == limit
    # The same endpoint still answers a request within the limit.
    assert "errors" not in site.gql("{ incidents { items { id } } }")
