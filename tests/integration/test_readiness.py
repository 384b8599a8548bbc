"""/readyz checks the database, the bus, Redis and the policy decision point, and names
what is down; /healthz stays a cheap liveness answer.

The dependencies are the machine's real PostgreSQL, NATS JetStream (127.0.0.1:4222)
and Redis (127.0.0.1:6379). Losing one at run time is played with a TCP forwarder
between the server and the service, cut and then restored.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from fastapi.testclient import TestClient

from incidents.api.readiness import Readiness
from incidents.app import build_container, create_app
from incidents.bus.jetstream import NatsBus
from incidents.config import ConfigError, Settings, load_settings
from incidents.store.engine import make_engine
from incidents.store.event_reader import EventReader
from tests.conftest import REQUIRE_SERVICES, free_port, make_settings
from tests.integration.test_bus_nats import NATS_URL, _delete_stream, require_nats
from tests.tcp_proxy import TcpProxy

REDIS_URL = os.environ.get("IM_TEST_REDIS", "redis://127.0.0.1:6379/0")


def require_redis() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        problem = f"Redis at {REDIS_URL} is not reachable: {exc}"
        if REQUIRE_SERVICES:
            pytest.fail(f"{problem} (IM_REQUIRE_SERVICES=1)")
        pytest.skip(problem)


@pytest.fixture
def stream() -> Iterator[dict[str, Any]]:
    """Bus settings on a stream of this test's own (deleted afterwards)."""
    require_nats()
    name = f"READY_{uuid.uuid4().hex[:10]}"
    yield {
        "nats_url": NATS_URL,
        "nats_stream": name,
        "nats_subject_prefix": f"ready{name[6:]}",
        "nats_consumer": f"c{name[6:]}",
    }
    asyncio.run(_delete_stream(name))


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(build_container(settings)))


def _readyz(client: TestClient) -> tuple[int, dict[str, Any]]:
    resp = client.get("/readyz")
    assert resp.headers["cache-control"] == "no-store"
    return resp.status_code, resp.json()


def _wait_for(client: TestClient, status: int, seconds: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        code, body = _readyz(client)
        if code == status:
            return body
        assert time.monotonic() < deadline, f"/readyz stayed {code}: {body}"
        time.sleep(0.2)


def test_every_dependency_is_checked(database_url: str, stream: dict[str, Any]) -> None:
    require_redis()
    settings = make_settings(database_url, redis_url=REDIS_URL, **stream)
    with _client(settings) as client:
        code, body = _readyz(client)
    assert code == 200
    assert body["status"] == "ready"
    assert list(body["checks"]) == ["database", "bus", "redis", "policy"]
    assert all(check["ok"] for check in body["checks"].values()), body


def test_redis_is_checked_only_when_configured(sqlite_url: str) -> None:
    with _client(make_settings(sqlite_url)) as client:
        code, body = _readyz(client)
    assert code == 200
    assert list(body["checks"]) == ["database", "bus", "policy"]


def test_a_broken_redis_url_is_named_without_its_password(sqlite_url: str) -> None:
    url = f"redis://:s3cret-pass@127.0.0.1:{free_port()}/0"
    with _client(make_settings(sqlite_url, redis_url=url)) as client:
        resp = client.get("/readyz")
        assert client.get("/healthz").status_code == 200
    assert resp.status_code == 503
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["failed"] == ["redis"]
    assert body["checks"]["redis"]["ok"] is False
    assert "redis:" in body["detail"] and "Connection" in body["checks"]["redis"]["error"]
    assert {name for name, check in body["checks"].items() if check["ok"]} == {
        "database",
        "bus",
        "policy",
    }
    assert "s3cret-pass" not in resp.text


def test_an_unreachable_opa_is_named(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, opa_url=f"http://127.0.0.1:{free_port()}")
    with _client(settings) as client:
        code, body = _readyz(client)
    assert code == 503
    assert body["failed"] == ["policy"]
    assert "OPA at http://127.0.0.1" in body["checks"]["policy"]["error"]


def test_a_policy_that_does_not_compile_is_named(sqlite_url: str, tmp_path: Path) -> None:
    (tmp_path / "broken.rego").write_text("package incidents.authz\n\ndecision := {\n")
    with _client(make_settings(sqlite_url, policy_dir=str(tmp_path))) as client:
        code, body = _readyz(client)
    assert code == 503
    assert body["failed"] == ["policy"]
    assert "broken.rego" in body["checks"]["policy"]["error"]


def test_losing_nats_is_named_and_readiness_returns_with_it(
    sqlite_url: str, stream: dict[str, Any]
) -> None:
    nats_host = urlsplit(NATS_URL)
    proxy = TcpProxy((nats_host.hostname or "127.0.0.1", nats_host.port or 4222)).start()
    settings = make_settings(sqlite_url, **{**stream, "nats_url": f"nats://127.0.0.1:{proxy.port}"})
    try:
        with _client(settings) as client:
            assert _readyz(client)[0] == 200
            proxy.stop()
            body = _wait_for(client, 503)
            assert body["failed"] == ["bus"]
            assert "NATS" in body["checks"]["bus"]["error"]
            assert client.get("/healthz").status_code == 200
            proxy.start()
            body = _wait_for(client, 200)
            assert body["checks"]["bus"]["ok"] is True
    finally:
        proxy.stop()


def _through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    netloc = f"{user}127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def test_losing_postgresql_is_named_and_readiness_returns_with_it(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432)).start()
    try:
        with _client(make_settings(_through(proxy, postgres_url))) as client:
            assert _readyz(client)[0] == 200
            proxy.stop()
            body = _wait_for(client, 503)
            assert body["failed"] == ["database"]
            assert "OperationalError" in body["checks"]["database"]["error"]
            proxy.start()
            _wait_for(client, 200)
    finally:
        proxy.stop()


def test_broken_database_and_nats_urls_are_named() -> None:
    # A server does not start without its database and NATS; the checks themselves
    # still name a dead URL rather than hang or pass.
    closed = free_port()
    engine = make_engine(f"postgresql://postgres@127.0.0.1:{closed}/test")
    bus = NatsBus(f"nats://127.0.0.1:{closed}")
    readiness = Readiness({"database": EventReader(engine).ping, "bus": bus.ping})
    try:
        results = {result.name: result for result in readiness.run()}
    finally:
        engine.dispose()
    assert not results["database"].ok and "Connection refused" in (results["database"].error or "")
    assert not results["bus"].ok and "not started" in (results["bus"].error or "")


def test_a_hung_check_times_out_and_is_not_started_twice() -> None:
    release = threading.Event()
    calls: list[int] = []

    def hangs() -> None:
        calls.append(1)
        release.wait(10)

    readiness = Readiness({"hangs": hangs, "fine": lambda: None}, timeout_seconds=0.2)
    try:
        for _ in range(3):
            results = {result.name: result for result in readiness.run()}
            assert results["fine"].ok
            assert results["hangs"].error == "no answer within 0.2 s"
        assert len(calls) == 1
    finally:
        release.set()


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"IM_REDIS_URL": "http://127.0.0.1:6379"}, "IM_REDIS_URL: expected redis://"),
        ({"IM_REDIS_URL": "mysql://u:pw@h/0"}, "'mysql://u:***@h/0'"),
        ({"IM_SHUTDOWN_DRAIN_SECONDS": "-1"}, "IM_SHUTDOWN_DRAIN_SECONDS: must be 0"),
        ({"IM_SHUTDOWN_DRAIN_SECONDS": "soon"}, "IM_SHUTDOWN_DRAIN_SECONDS: expected a number"),
    ],
)
def test_bad_readiness_and_drain_settings_name_the_variable(
    env: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert needle in str(caught.value)


def test_the_redis_password_is_masked_in_the_shown_settings() -> None:
    shown = load_settings({"IM_REDIS_URL": "redis://:s3cret@redis:6379/0"}).masked()
    assert shown["redis_url"] == "redis://:***@redis:6379/0"
