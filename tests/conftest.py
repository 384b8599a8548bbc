"""Shared fixtures: every contract test runs on SQLite and on the machine's PostgreSQL.

PostgreSQL tests get a schema of their own (search_path), so they are isolated and
leave nothing behind. Without a reachable server they are skipped, unless
IM_REQUIRE_SERVICES=1 (CI), which turns a missing service into a failure.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

import psycopg
import pytest
from fastapi.testclient import TestClient

from incidents.app import Container, build_container, create_app
from incidents.config import Settings
from incidents.identity.directory import GrantKind, PrincipalType
from incidents.policy.model import ATTRIBUTES
from tests.fakes.jira import FakeJira
from tests.fakes.servicenow import FakeServiceNow

# The installed command line, for tests that run it as a separate process.
CONSOLE_SCRIPT = Path(sys.executable).with_name("incidents")


def free_port() -> int:
    """A TCP port on the loopback nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


PG_DSN = os.environ.get("IM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("IM_REQUIRE_SERVICES") == "1"


def _postgres_available() -> str | None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_DSN} is not reachable: {exc}"


def require_postgres() -> None:
    problem = _postgres_available()
    if problem is None:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{problem} (IM_REQUIRE_SERVICES=1)")
    pytest.skip(problem)


# Makes an empty database of a kind ("sqlite", "postgresql") and returns its URL.
Fresh = Callable[[str], str]


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Fresh]:
    """Makes empty databases: ``fresh("sqlite")`` or ``fresh("postgresql")`` (a schema
    of its own, dropped afterwards)."""
    schemas: list[str] = []

    def make(kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}"
        require_postgres()
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        schemas.append(schema)
        return f"{PG_DSN}?options=-csearch_path%3D{schema}"

    yield make
    if schemas:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


REDIS_URL = os.environ.get("IM_TEST_REDIS", "redis://127.0.0.1:6379/0")


def require_redis() -> None:
    """Skip without a reachable Redis, or fail with IM_REQUIRE_SERVICES=1."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
        return
    except redis.RedisError as exc:
        problem = f"Redis at {REDIS_URL} is not reachable: {exc}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{problem} (IM_REQUIRE_SERVICES=1)")
    pytest.skip(problem)


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis (tests use keys of their own)."""
    require_redis()
    return REDIS_URL


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, private schema."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_DSN}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'incidents.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both backends, one after the other."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'incidents.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


FULL_ROLES = ("timeline.reader", "timeline.writer", "timeline.exporter", "incident.commander")
ALL_ATTRIBUTES = ATTRIBUTES


def grant_access(
    container: Container,
    email: str,
    roles: tuple[str, ...] = FULL_ROLES,
    attributes: tuple[str, ...] = ALL_ATTRIBUTES,
    clearance: str | None = None,
) -> None:
    """Add ``email`` to the directory with the given grants (all access by default)."""
    user = container.directory.ensure_user(email)
    for role in roles:
        container.directory.grant(PrincipalType.USER, user.user_id, GrantKind.ROLE, role)
    for attribute in attributes:
        container.directory.grant(PrincipalType.USER, user.user_id, GrantKind.ATTRIBUTE, attribute)
    if clearance is not None:
        container.directory.grant(PrincipalType.USER, user.user_id, GrantKind.CLEARANCE, clearance)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    return Settings(database_url=database_url, sqlite_synchronous="NORMAL", **overrides)


def stream_settings(database_url: str) -> Settings:
    """Settings for stream tests: heartbeats, token and policy caches renew in 0.5 s."""
    return make_settings(
        database_url,
        stream_heartbeat_seconds=0.5,
        token_cache_seconds=0.5,
        policy_cache_seconds=0.5,
    )


@pytest.fixture
def container(database_url: str) -> Iterator[Container]:
    c = build_container(make_settings(database_url))
    c.start()
    try:
        yield c
    finally:
        c.close()


@dataclass
class Api:
    """A test client with a valid token for alice@example.com."""

    client: TestClient
    token: str
    container: Container

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def post_event(self, event: dict[str, Any], **headers: str) -> Any:
        return self.client.post(
            "/api/v1/timeline/events",
            json=event,
            headers={**self.auth, "Content-Type": "application/cloudevents+json", **headers},
        )

    def post_batch(self, events: list[dict[str, Any]]) -> Any:
        return self.client.post(
            "/api/v1/timeline/events",
            json=events,
            headers={**self.auth, "Content-Type": "application/cloudevents-batch+json"},
        )

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.auth)


@pytest.fixture
def api(database_url: str) -> Iterator[Api]:
    c = build_container(make_settings(database_url))
    grant_access(c, "alice@example.com")
    _, token = c.tokens.create("alice@example.com")
    with TestClient(create_app(c)) as client:
        yield Api(client, token, c)


def event(
    n: int | str = 1,
    *,
    incident: str | None = "INC-1",
    type_: str = "im.note.add",
    time: str | None = "2025-12-11T10:30:00Z",
    data: Any = None,
    **attrs: Any,
) -> dict[str, Any]:
    """A valid structured-mode CloudEvent; keyword arguments add or override attributes."""
    out: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"evt-{n}",
        "source": "im://tests",
        "type": type_,
        "data": data if data is not None else {"note": f"note {n}"},
    }
    if incident is not None:
        out["subject"] = f"incident/{incident}"
    if time is not None:
        out["time"] = time
    for key, value in attrs.items():
        out[key.replace("__", ".")] = value
    return out


_LAYERS = ("unit", "contract", "integration")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder: ``pytest -m unit`` runs the fast ones alone."""
    for item in items:
        folder = item.path.parent.name
        if folder in _LAYERS:
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture
def snow() -> Iterator[FakeServiceNow]:
    """A local ServiceNow Table API, one per test: incident ids restart at INC-1 in each
    database, and a shared instance would hand a second database the first one's
    tickets."""
    fake = FakeServiceNow().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def jira() -> Iterator[FakeJira]:
    """A local Jira Cloud REST v3, one per test."""
    fake = FakeJira().start()
    try:
        yield fake
    finally:
        fake.stop()


@contextmanager
def stored_at(created_us: int) -> Iterator[None]:
    """Appends inside this block are recorded by the server (``created_us``) at
    ``created_us``, as if the clock said so: for ages measured from server time."""
    with patch("incidents.timeline.group_commit.now_micros", return_value=created_us):
        yield
