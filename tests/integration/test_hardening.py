"""Hardening of the API's edges: what a hostile or broken client sends is refused
cleanly (4xx problem details, one log line), never stored lossily, never a 500."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from graphql import get_introspection_query
from starlette.websockets import WebSocketDisconnect

from incidents.app import Container, build_container, create_app
from incidents.identity.tokens import TokenService
from incidents.policy.decision_point import EmbeddedDecisionPoint
from incidents.policy.model import Decision, Subject
from incidents.policy.service import PolicyService
from tests.conftest import Api, event, grant_access, make_settings
from tests.integration.test_cli import serve
from tests.integration.test_streams import Site

PROBLEM_JSON = "application/problem+json"


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Api]:
    """An API on SQLite only, for checks that happen before anything is stored."""
    container = build_container(make_settings(f"sqlite:///{tmp_path / 'edge.db'}"))
    grant_access(container, "alice@example.com", ("timeline.reader", "timeline.writer", "admin"))
    _, token = container.tokens.create("alice@example.com")
    with TestClient(create_app(container)) as client:
        yield Api(client, token, container)


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# --- CloudEvents binary mode: ce-* headers -----------------------------------------


def _binary(api: Api, headers: list[tuple[str, str | bytes]]) -> Any:
    base: list[tuple[str, str | bytes]] = [
        ("ce-specversion", "1.0"),
        ("ce-source", "im://tests"),
        ("ce-type", "im.note.add"),
        ("content-type", "text/plain"),
        ("authorization", f"Bearer {api.token}"),
    ]
    return api.client.post("/api/v1/timeline/events", content=b"hello", headers=base + headers)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("fz-%ff%fe", "UTF-8"),
        ("fz-%zz", "%XX"),
        ("fz-%4", "%XX"),
        ("fz-50%", "%XX"),
        ("fz-\u00e9".encode("utf-8"), "ASCII"),
    ],
)
def test_ce_headers_that_are_not_percent_encoded_utf8_are_refused(
    edge: Api, value: str | bytes, reason: str
) -> None:
    body = _problem(_binary(edge, [("ce-id", value)]), 400)
    assert "ce-id" in body["detail"] and reason in body["detail"], body
    assert body["errors"][0]["field"] == "ce-id"
    assert edge.get("/api/v1/timeline/events/fz-").status_code == 404


def test_distinct_undecodable_ids_never_share_a_dedupe_key(edge: Api) -> None:
    # Decoded leniently, both became "fz-\ufffd\ufffd": the second was a duplicate.
    for value in ("fz-%ff%fe", "fz-%fe%ff"):
        assert _binary(edge, [("ce-id", value)]).status_code == 400
    good = _binary(edge, [("ce-id", "fz-%C3%A9%25")])
    assert good.status_code == 201, good.text
    assert good.json()["event_id"] == "fz-\u00e9%"


def test_a_repeated_context_header_is_refused(edge: Api) -> None:
    body = _problem(_binary(edge, [("ce-id", "one"), ("ce-id", "two")]), 400)
    assert body["errors"] == [
        {"field": "ce-id", "detail": "is given more than once; send each attribute once"}
    ]
    assert edge.get("/api/v1/timeline/events/two").status_code == 404
    assert edge.get("/api/v1/timeline/events/one").status_code == 404
    # Other headers may repeat as HTTP allows.
    ok = _binary(edge, [("ce-id", "three"), ("x-note", "a"), ("x-note", "b")])
    assert ok.status_code == 201, ok.text


# --- batches: the one-event size limit holds for each event -----------------------


def test_an_event_of_a_batch_is_capped_like_a_single_event(edge: Api) -> None:
    limit = edge.container.settings.max_event_bytes
    huge = event("huge", data={"blob": "x" * (5 * 1024 * 1024)})
    near = event("near", data={"blob": "y" * (limit - 4096)})
    r = edge.post_batch([event(1), huge, near])
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert [result["status"] for result in body["results"]] == [201, 413, 201]
    refused = body["results"][1]
    assert refused["title"] == "Event too large" and refused["created"] is False
    assert refused["limit_bytes"] == limit and refused["size_bytes"] > 5 * 1024 * 1024
    assert str(limit) in refused["detail"]
    assert (body["created"], body["rejected"]) == (2, 1)
    assert edge.get("/api/v1/timeline/events/evt-huge").status_code == 404
    # The same event alone is refused as a whole, before its body is read.
    alone = edge.post_event(huge)
    assert _problem(alone, 413)["limit_bytes"] == limit


# --- NUL: refused at the edge, alike on both backends -----------------------------


@pytest.fixture
def admin_api(database_url: str) -> Iterator[Api]:
    """Both backends; the token's user may also manage the directory (SCIM)."""
    container = build_container(make_settings(database_url))
    grant_access(container, "alice@example.com", ("timeline.reader", "timeline.writer", "admin"))
    _, token = container.tokens.create("alice@example.com")
    with TestClient(create_app(container)) as client:
        yield Api(client, token, container)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/incidents/INC%00X", {}, "incident_id"),
        ("/api/v1/incidents/INC%00X/timeline", {}, "incident_id"),
        ("/api/v1/timeline/events/evt%00", {}, "event_id"),
        ("/api/v1/alerts", {"provider": "a\x00b"}, "provider"),
        ("/api/v1/incidents", {"q": "a\x00b"}, "q"),
        ("/api/v1/incidents/INC-1/timeline", {"actor": "\x00"}, "actor"),
        ("/api/v1/incidents", {"q\x00": "x"}, "q\\x00"),
    ],
)
def test_a_nul_in_a_path_or_query_value_is_a_400_on_both_backends(
    admin_api: Api, path: str, params: dict[str, str], field: str
) -> None:
    body = _problem(admin_api.get(path, **params), 400)
    assert body["type"] == "urn:incidents:problem:invalid-value", body
    assert body["errors"] == [
        {"field": field, "detail": "must not contain NUL (U+0000) characters"}
    ]


def test_scim_refuses_nul_in_bodies_and_filters_on_both_backends(admin_api: Api) -> None:
    users = "/api/v1/users"
    schema = "urn:ietf:params:scim:schemas:core:2.0:User"
    r = admin_api.client.post(
        users,
        json={"schemas": [schema], "userName": "x\x00y@example.com"},
        headers=admin_api.auth,
    )
    # SCIM endpoints answer every error in the SCIM error format (RFC 7644 3.12).
    assert r.status_code == 400, r.text
    assert r.json()["scimType"] == "invalidValue"
    assert "userName" in r.json()["detail"] and "NUL" in r.json()["detail"]
    listed = admin_api.get(users).json()
    assert [u["userName"] for u in listed["Resources"]] == ["alice@example.com"]
    nested = admin_api.client.post(
        users,
        json={"schemas": [schema], "userName": "z@example.com", "name": {"formatted": "\x00"}},
        headers=admin_api.auth,
    )
    assert nested.status_code == 400 and "name.formatted" in nested.json()["detail"]
    found = admin_api.get(users, filter='userName eq "x\\u0000y@example.com"')
    assert found.status_code == 400 and found.json()["scimType"] == "invalidFilter"
    query = admin_api.get(users, filter='userName eq "a\x00"')
    assert query.status_code == 400 and "filter" in query.json()["detail"]


def test_a_websocket_with_nul_in_its_query_is_closed_before_it_opens(edge: Api) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        edge.client.websocket_connect("/api/v1/events/ws?incident=a%00", headers=edge.auth) as ws,
    ):
        ws.receive_json()
    assert refused.value.code == 1003


# --- a client that disconnects mid-body -------------------------------------------


def _disconnect_mid_body(app: Any, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Call ``app`` as a server would when the client hangs up after part of the body."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"specversion": "1.0", "id": "cut', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    return sent


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/v1/timeline/events", "application/cloudevents+json"),
        ("/api/v1/users", "application/scim+json"),
        ("/api/v1/incidents", "application/json"),
        ("/graphql", "application/json"),
    ],
)
def test_a_client_gone_mid_body_is_one_info_line(
    edge: Api, caplog: pytest.LogCaptureFixture, path: str, content_type: str
) -> None:
    app = edge.client.app
    headers = {**edge.auth, "Content-Type": content_type, "Content-Length": "5000"}
    with caplog.at_level(logging.INFO, logger="incidents"):
        _disconnect_mid_body(app, path, headers)
    mine = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in mine] == [
        (logging.INFO, f"client disconnected before sending its whole body: POST {path}")
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


# --- GraphQL: nesting, depth, aliases, size, NUL ------------------------------------


def _graphql_site(database_url: str, **settings: Any) -> TestClient:
    container = build_container(make_settings(database_url, **settings))
    grant_access(container, "cora@example.com", ("incident.commander",))
    _, token = container.tokens.create("cora@example.com")
    client = TestClient(create_app(container))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


@pytest.fixture
def gql(tmp_path: Path) -> Iterator[TestClient]:
    with _graphql_site(
        f"sqlite:///{tmp_path / 'gql.db'}", graphql_max_depth=2, graphql_max_aliases=2
    ) as client:
        yield client


DEEP = "[" * 1000 + "]" * 1000


@pytest.mark.parametrize(
    "body",
    [
        '{"query": "{ incidents { items { id } } }", "variables": {"x": ' + DEEP + "}}",
        '{"query": "{ incidents { items { id } } }", "extensions": {"x": ' + DEEP + "}}",
        DEEP,
        "[" * 5000,
    ],
)
def test_deeply_nested_graphql_json_is_a_400_problem(gql: TestClient, body: str) -> None:
    r = gql.post("/graphql", content=body, headers={"Content-Type": "application/json"})
    problem = _problem(r, 400)
    assert problem["type"] == "urn:incidents:problem:malformed-body"
    assert "levels deep" in problem["detail"], problem


def test_deeply_nested_graphql_get_variables_are_a_400_problem(gql: TestClient) -> None:
    r = gql.get("/graphql", params={"query": "{ incidents { items { id } } }", "variables": DEEP})
    assert _problem(r, 400)["type"] == "urn:incidents:problem:malformed-body"


def test_a_deeply_nested_subscription_message_closes_the_socket(gql: TestClient) -> None:
    with gql.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_text('{"type": "connection_init", "payload": ' + DEEP + "}")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4400


def _errors(client: TestClient, query: str, **variables: Any) -> list[str]:
    r = client.post("/graphql", json={"query": query, "variables": variables})
    assert r.status_code == 200, r.text
    return [e["message"] for e in r.json().get("errors", [])]


def test_graphql_operations_are_limited_in_depth_aliases_and_size(gql: TestClient) -> None:
    assert _errors(gql, "{ incidents { items { labels { key } } } }") == [
        "'anonymous' exceeds maximum operation depth of 2"
    ]
    assert _errors(gql, "{ incidents { items { id } } }") == []
    too_deep = (
        "query Deep { incident(id: 1) { timeline { id } } incidents { items { labels { key } } } }"
    )
    assert "'Deep' exceeds maximum operation depth of 2" in _errors(gql, too_deep)
    aliased = (
        "{ a: incidents { nextCursor } b: incidents { nextCursor } c: incidents { nextCursor } }"
    )
    assert _errors(gql, aliased) == ["3 aliases found. Allowed: 2"]
    huge = "{ incidents { items { " + "id " * 3000 + "} } }"
    assert _errors(gql, huge) == [
        "Syntax Error: Document contains more than 2000 tokens. Parsing aborted."
    ]


def test_graphql_limits_have_sensible_defaults(tmp_path: Path) -> None:
    with _graphql_site(f"sqlite:///{tmp_path / 'defaults.db'}") as client:
        aliased = " ".join(f"a{i}: incidents {{ nextCursor }}" for i in range(20))
        assert _errors(client, "{ " + aliased + " }") == []
        assert _errors(client, "{ " + aliased + " b: incidents { nextCursor } }") == [
            "21 aliases found. Allowed: 20"
        ]
        nested = "{ " + "incidents { items { " * 6 + "id" + " } }" * 6 + " }"
        assert any("maximum operation depth of 10" in m for m in _errors(client, nested))
        # Tools that read the schema still can.
        assert _errors(client, get_introspection_query(descriptions=True)) == []


def test_graphql_refuses_nul_in_arguments_on_both_backends(database_url: str) -> None:
    with _graphql_site(database_url) as client:
        literal = _errors(client, 'query { incident(id: "INC\\u0000") { id } }')
        assert literal == ["a string argument must not contain NUL (U+0000) characters"]
        variable = _errors(
            client,
            "query Q($s: String) { incidents(service: $s) { items { id } } }",
            s="a\x00",
        )
        assert variable == ["variable s must not contain NUL (U+0000) characters"]


# --- live streams: no frame leaves once a revocation has taken effect --------------

# Long caches and heartbeats: a stream that only re-checks its grant every so often
# (rather than before each frame) would still be trusting the revoked token.
SLOW_CACHES = {
    "token_cache_seconds": 30.0,
    "policy_cache_seconds": 30.0,
    "stream_heartbeat_seconds": 30.0,
}


def _revoked_everywhere(url: str, headers: dict[str, str]) -> None:
    """Wait until a request with the token is refused, as the issue's client would."""
    deadline = time.monotonic() + 15
    while httpx.get(f"{url}/api/v1/whoami", headers=headers).status_code != 401:
        assert time.monotonic() < deadline, "the revocation never took effect"
        time.sleep(0.05)


@pytest.fixture
def live(database_url: str) -> Iterator[Site]:
    container = build_container(make_settings(database_url, **SLOW_CACHES))
    handle = serve(container, "unused", database_url)
    site = Site(handle, container)
    try:
        yield site
    finally:
        for stream in site.streams:
            stream.close()
        handle.stop()


def test_an_sse_stream_sends_nothing_after_its_token_is_revoked(live: Site) -> None:
    writer = live.token("w@example.com")
    info, token = live.container.tokens.create("w@example.com")
    reader = {"Authorization": f"Bearer {token}"}
    stream = live.open(reader)
    live.append(writer, [event(1)])
    assert [f.data["id"] for f in stream.events(1)] == ["evt-1"]
    live.container.tokens.revoke(info.token_id)
    _revoked_everywhere(live.server.url, reader)
    live.append(writer, [event(2)])
    assert stream.quiet(1.5) == [], "a frame left after the revocation took effect"
    assert stream.thread is not None
    stream.thread.join(timeout=10)
    assert not stream.thread.is_alive(), "the stream outlived its revoked token"


def test_a_revocation_by_another_process_ends_the_stream_once_it_takes_effect(
    tmp_path: Path,
) -> None:
    # The CLI revokes in its own process: this server's token cache is not told, and
    # whoami keeps answering until the cached check expires (token_cache_seconds).
    database_url = f"sqlite:///{tmp_path / 'other.db'}"
    settings = {**SLOW_CACHES, "token_cache_seconds": 1.0, "policy_cache_seconds": 1.0}
    container = build_container(make_settings(database_url, **settings))
    handle = serve(container, "unused", database_url)
    site = Site(handle, container)
    try:
        writer = site.token("w@example.com")
        info, token = container.tokens.create("w@example.com")
        reader = {"Authorization": f"Bearer {token}"}
        stream = site.open(reader)
        TokenService(container.engine).revoke(info.token_id)
        _revoked_everywhere(handle.url, reader)
        site.append(writer, [event(1)])
        assert stream.quiet(1.5) == [], "a frame left after the revocation took effect"
    finally:
        for stream in site.streams:
            stream.close()
        handle.stop()


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[tuple[TestClient, Container, dict[str, str], str]]:
    container = build_container(make_settings(f"sqlite:///{tmp_path / 's.db'}", **SLOW_CACHES))
    grant_access(container, "w@example.com", ("timeline.reader", "timeline.writer"))
    grant_access(container, "r@example.com", ("timeline.reader", "incident.reader"))
    _, writer = container.tokens.create("w@example.com")
    info, reader = container.tokens.create("r@example.com")
    with TestClient(create_app(container)) as client:
        client.headers["Authorization"] = f"Bearer {reader}"
        yield client, container, {"Authorization": f"Bearer {writer}"}, info.token_id


def _subscribed(container: Container) -> None:
    deadline = time.monotonic() + 10
    while container.feed.subscribers < 1:
        assert time.monotonic() < deadline, "the stream never subscribed"
        time.sleep(0.01)


def _revoke_then_append(
    client: TestClient, container: Container, writer: dict[str, str], token_id: str
) -> None:
    container.tokens.revoke(token_id)
    assert client.get("/api/v1/whoami").status_code == 401
    r = client.post(
        "/api/v1/timeline/events",
        json=event(1),
        headers={**writer, "Content-Type": "application/cloudevents+json"},
    )
    assert r.status_code == 201, r.text


def test_a_websocket_sends_nothing_after_its_token_is_revoked(
    slow: tuple[TestClient, Container, dict[str, str], str],
) -> None:
    client, container, writer, token_id = slow
    with client.websocket_connect("/api/v1/events/ws") as ws:
        _subscribed(container)
        _revoke_then_append(client, container, writer, token_id)
        with pytest.raises(WebSocketDisconnect):
            message = ws.receive_json()
            pytest.fail(f"sent after the revocation took effect: {message}")


def test_a_graphql_subscription_sends_nothing_after_its_token_is_revoked(
    slow: tuple[TestClient, Container, dict[str, str], str],
) -> None:
    client, container, writer, token_id = slow
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {}})
        assert ws.receive_json()["type"] == "connection_ack"
        query = "subscription S($id: ID!) { timelineEventAdded(incidentId: $id) { id } }"
        payload = {"query": query, "variables": {"id": "INC-1"}}
        ws.send_json({"id": "1", "type": "subscribe", "payload": payload})
        _subscribed(container)
        _revoke_then_append(client, container, writer, token_id)
        message = ws.receive_json()
        assert message["type"] == "complete", f"sent after the revocation: {message}"


@dataclass
class _CountingDecisionPoint:
    """A decision point whose decisions the policy service may not cache (like OPA)."""

    inner: EmbeddedDecisionPoint = field(default_factory=EmbeddedDecisionPoint)
    calls: Counter[str] = field(default_factory=Counter)

    def decide(self, subject: Subject) -> Decision:
        self.calls[subject.id] += 1
        return self.inner.decide(subject)


def test_a_stream_asks_a_remote_decision_point_only_every_so_often(tmp_path: Path) -> None:
    container = build_container(make_settings(f"sqlite:///{tmp_path / 'r.db'}", **SLOW_CACHES))
    pdp = _CountingDecisionPoint()
    container.policy = PolicyService(container.directory, pdp, container.tracer, 30.0)
    assert not container.policy.reuses_decisions
    grant_access(container, "w@example.com", ("timeline.writer",))
    grant_access(container, "r@example.com", ("timeline.reader",))
    _, writer = container.tokens.create("w@example.com")
    _, reader = container.tokens.create("r@example.com")
    with (
        TestClient(create_app(container)) as client,
        client.websocket_connect(
            "/api/v1/events/ws", headers={"Authorization": f"Bearer {reader}"}
        ) as ws,
    ):
        _subscribed(container)
        for n in range(5):
            client.post(
                "/api/v1/timeline/events",
                json=event(n),
                headers={
                    "Authorization": f"Bearer {writer}",
                    "Content-Type": "application/cloudevents+json",
                },
            )
        received = 0
        while received < 5:
            received += ws.receive_json()["kind"] == "event"
    # One decision when the socket opened, none per frame within IM_POLICY_CACHE_SECONDS.
    assert pdp.calls["r@example.com"] == 1
