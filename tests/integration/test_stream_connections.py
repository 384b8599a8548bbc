"""Open stream connections are recorded in-process, or in Redis for every process."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from incidents.app import build_container, create_app
from incidents.store.redis_sessions import RedisRegistry
from tests.conftest import event, grant_access, make_settings


def _wait_for(predicate: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _site(tmp_path: Path, redis_url: str = "", prefix: str = "") -> Any:
    container = build_container(
        make_settings(f"sqlite:///{tmp_path / 'db.sqlite'}", redis_url=redis_url)
    )
    if redis_url:
        container.connections = RedisRegistry(redis_url, prefix)
    grant_access(container, "w@example.com")
    grant_access(container, "root@example.com", roles=("admin",), attributes=())
    return container


def test_a_websocket_is_listed_while_open(tmp_path: Path) -> None:
    container = _site(tmp_path)
    _, token = container.tokens.create("w@example.com")
    _, admin = container.tokens.create("root@example.com")
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(container)) as client:

        def listed() -> list[dict[str, Any]]:
            answer = client.get(
                "/api/v1/streams/connections", headers={"Authorization": f"Bearer {admin}"}
            )
            assert answer.status_code == 200, answer.text
            connections: list[dict[str, Any]] = answer.json()["connections"]
            return connections

        assert listed() == []
        with client.websocket_connect("/api/v1/events/ws?incident=INC-1", headers=auth) as ws:
            client.post(
                "/api/v1/timeline/events",
                content=orjson.dumps([event(1)]),
                headers={**auth, "Content-Type": "application/cloudevents-batch+json"},
            )
            message = ws.receive_json()
            while message["kind"] != "event":
                message = ws.receive_json()
            (record,) = _wait_for(listed)
            assert record["kind"] == "websocket" and record["subject"] == "w@example.com"
            assert record["incident_id"] == "INC-1"
        assert _wait_for(lambda: listed() == [])
        # Only administrators may list them.
        assert client.get("/api/v1/streams/connections", headers=auth).status_code == 403


def test_every_process_sees_every_connection_through_redis(tmp_path: Path, redis_url: str) -> None:
    prefix = f"test-{uuid.uuid4().hex}:"
    first = _site(tmp_path, redis_url, prefix)
    second = build_container(
        make_settings(f"sqlite:///{tmp_path / 'db.sqlite'}", redis_url=redis_url)
    )
    second.connections = RedisRegistry(redis_url, prefix)
    _, token = first.tokens.create("w@example.com")
    _, admin = first.tokens.create("root@example.com")
    with (
        TestClient(create_app(first)) as one,
        TestClient(create_app(second)) as two,
    ):
        listing = {"Authorization": f"Bearer {admin}"}

        def seen_by_second() -> list[dict[str, Any]]:
            connections: list[dict[str, Any]] = two.get(
                "/api/v1/streams/connections", headers=listing
            ).json()["connections"]
            return connections

        with one.websocket_connect(
            "/api/v1/events/ws", headers={"Authorization": f"Bearer {token}"}
        ):
            records = _wait_for(seen_by_second)
            assert [r["subject"] for r in records] == ["w@example.com"]
        assert _wait_for(lambda: seen_by_second() == [])
