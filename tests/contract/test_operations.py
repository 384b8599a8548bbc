"""Operations: spans, migrations, configuration, and behaviour when storage fails."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text

from incidents.app import build_container, create_app
from incidents.config import ConfigError, load_settings, mask_url_password
from incidents.store.engine import make_engine
from incidents.store.migrate import current_revision, head_revision, migrate
from tests.conftest import Api, event, grant_access, make_settings


@pytest.fixture
def traced(database_url: str) -> Iterator[tuple[Api, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    container = build_container(make_settings(database_url), span_exporter=exporter)
    grant_access(container, "alice@example.com")
    _, token = container.tokens.create("alice@example.com")
    with TestClient(create_app(container)) as client:
        yield Api(client, token, container), exporter


def test_timeline_operations_emit_their_spans(
    traced: tuple[Api, InMemorySpanExporter],
) -> None:
    api, exporter = traced
    assert api.post_event(event(1)).status_code == 201
    assert api.get("/api/v1/incidents/INC-1/timeline").status_code == 200
    assert api.get("/api/v1/incidents/INC-1/timeline/export", format="md").status_code == 200
    assert api.get("/api/v1/incidents/INC-1/timeline/verify").status_code == 200
    names = {span.name for span in exporter.get_finished_spans()}
    assert {"timeline.append", "timeline.query", "timeline.export", "timeline.verify"} <= names


def test_migrations_run_once_and_report_the_revision(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
        before, after = migrate(engine)
        assert (before, after) == (None, head_revision())
        assert migrate(engine) == (head_revision(), head_revision())
        with engine.connect() as conn:
            assert conn.execute(text("SELECT position FROM log_head")).scalar_one() == 0
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode(sqlite_url: str) -> None:
    container = build_container(make_settings(sqlite_url))
    try:
        with container.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        container.close()


def test_a_failing_database_is_503_and_nothing_is_half_written(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api.post_event(event(1)).status_code == 201

    def broken() -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(api.container.writer, "transaction", broken)
    resp = api.post_batch([event(2), event(3)])
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "1"
    assert resp.headers["content-type"].startswith("application/problem+json")
    monkeypatch.undo()
    ids = [e["id"] for e in api.get("/api/v1/incidents/INC-1/timeline").json()["events"]]
    assert ids == ["evt-1"]
    # The writer carries on once storage answers again.
    assert api.post_batch([event(2), event(3)]).json()["created"] == 2


def test_readiness_follows_the_database(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    assert api.client.get("/readyz").status_code == 200

    def down() -> None:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(api.container.reader, "ping", down)
    resp = api.client.get("/readyz")
    assert resp.status_code == 503
    assert api.client.get("/healthz").status_code == 200


def test_settings_from_yaml_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "incidents.yaml"
    config.write_text("port: 9000\nmax_batch_events: 50\nexport_dialect: dotted\n")
    settings = load_settings({"IM_CONFIG": str(config), "IM_PORT": "9100"})
    assert settings.port == 9100  # the environment wins over the file
    assert settings.max_batch_events == 50
    assert settings.export_dialect == "dotted"
    assert load_settings({}).database_url == "sqlite:///./incidents.db"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"IM_PORT": "eighty"}, "IM_PORT"),
        ({"IM_DATABASE_URL": "mysql://x"}, "IM_DATABASE_URL"),
        ({"IM_EXPORT_DIALECT": "fancy"}, "IM_EXPORT_DIALECT"),
        ({"IM_MAX_EVENT_BYTES": "1000"}, "65536"),
        ({"IM_CONFIG": "/nonexistent/incidents.yaml"}, "cannot read"),
    ],
)
def test_bad_settings_name_the_setting(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(env)


def test_passwords_are_masked() -> None:
    assert (
        mask_url_password("postgresql://app:s3cret@db:5432/incidents")
        == "postgresql://app:***@db:5432/incidents"
    )
    assert mask_url_password("sqlite:///./incidents.db") == "sqlite:///./incidents.db"


def test_an_unknown_key_in_the_config_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "incidents.yaml"
    config.write_text("max_batch_event: 50\n")
    with pytest.raises(ConfigError, match="'max_batch_event', which is not a setting"):
        load_settings({"IM_CONFIG": str(config)})
