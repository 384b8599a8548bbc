"""``incidents retention``: holds through a real server, runs against the database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from incidents.app import Container, build_container
from incidents.events.timeformat import format_micros, now_micros
from incidents.retention.tiers import DAY_US
from tests.conftest import event, grant_access, make_settings, stored_at
from tests.integration.test_cli import Cli, Server, serve
from tests.integration.test_cli_identity import fails


@pytest.fixture
def site(database_url: str) -> Iterator[tuple[Server, Container]]:
    container = build_container(make_settings(database_url, policy_cache_seconds=0))
    grant_access(container, "alice@example.com")
    grant_access(
        container,
        "counsel@example.com",
        roles=("compliance.officer",),
        attributes=("legal_hold_access",),
    )
    _, token = container.tokens.create("counsel@example.com")
    handle = serve(container, token, database_url)
    try:
        yield handle, container
    finally:
        handle.stop()


def _seed(server: Server, container: Container, incident: str, age_days: float) -> None:
    _, token = container.tokens.create("alice@example.com")
    when = format_micros(now_micros() - int(age_days * DAY_US))
    response = httpx.post(
        f"{server.url}/api/v1/timeline/events",
        json=event(f"{incident}-1", incident=incident, time=when),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/cloudevents+json",
        },
    )
    assert response.status_code == 201, response.text


def test_hold_add_list_remove_and_run(
    site: tuple[Server, Container], tmp_path: Path, database_url: str
) -> None:
    server, container = site
    cli = Cli(server, tmp_path)
    _seed(server, container, "INC-OLD", 3000)
    _seed(server, container, "INC-HELD", 3000)
    _seed(server, container, "INC-MID", 200)
    added = cli.ok("retention", "hold", "add", "INC-HELD", "--reason", "litigation 17")
    assert "INC-HELD is on legal hold" in added.stdout
    listed = cli.ok("retention", "hold", "list").stdout
    assert "INC-HELD" in listed and "litigation 17" in listed and "INC-OLD" not in listed
    assert "already on legal hold" in fails(
        cli, "retention", "hold", "add", "INC-HELD", "--reason", "again"
    )

    dry = cli.ok("retention", "run", "--dry-run", IM_DATABASE_URL=database_url).stdout
    assert "dry run" in dry
    rows = {line.split("│")[1].strip(): line for line in dry.splitlines() if "│ INC-" in line}
    assert "purge" in rows["INC-OLD"] and "archive" in rows["INC-MID"]
    assert "legal-hold" in rows["INC-HELD"]
    assert "would archive 1 and purge 1 incidents" in dry
    assert container.timeline.verify("INC-OLD").events == 1

    done = cli.ok("retention", "run", IM_DATABASE_URL=database_url).stdout
    assert "archived 1 incidents (1 events), purged 1 (1 events" in done
    assert container.timeline.verify("INC-OLD").intact
    assert container.retention is not None and container.retention.is_archived("INC-MID")
    assert container.timeline.verify("INC-HELD").events == 2

    cli.ok("retention", "hold", "remove", "INC-HELD", "--reason", "settled")
    assert "not on legal hold" in fails(
        cli, "retention", "hold", "remove", "INC-HELD", "--reason", "again"
    )
    no_reason = cli("retention", "hold", "add", "INC-OLD")
    assert no_reason.exit_code == 2


def test_config_show_masks_the_redis_password_and_checks_periods(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from incidents.cli.main import app

    runner = CliRunner()
    env = {"IM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}", "IM_CONFIG": None}
    shown = runner.invoke(
        app, ["config", "show"], env={**env, "IM_REDIS_URL": "redis://:s3cr3t@cache:6379/0"}
    )
    assert shown.exit_code == 0, shown.stdout
    assert "s3cr3t" not in shown.stdout
    assert json.loads(shown.stdout)["redis_url"] == "redis://:***@cache:6379/0"
    bad = runner.invoke(
        app,
        ["config", "show"],
        env={**env, "IM_RETENTION_PURGE_AFTER_DAYS": "30", "IM_RETENTION_ARCHIVE_AFTER_DAYS": "90"},
    )
    assert bad.exit_code != 0
    assert "IM_RETENTION_PURGE_AFTER_DAYS" in (bad.stdout + bad.stderr + str(bad.exception))


def test_the_run_lists_and_purges_events_of_no_incident(
    site: tuple[Server, Container], tmp_path: Path, database_url: str
) -> None:
    server, container = site
    cli = Cli(server, tmp_path)
    _, token = container.tokens.create("alice@example.com")
    for n, age in enumerate((3000, 2900, 1)):
        when = now_micros() - age * DAY_US
        with stored_at(when):
            response = httpx.post(
                f"{server.url}/api/v1/timeline/events",
                json=event(f"loose-{n}", incident=None, time=format_micros(when)),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/cloudevents+json",
                },
            )
        assert response.status_code == 201, response.text
    dry = cli.ok("retention", "run", "--dry-run", IM_DATABASE_URL=database_url).stdout
    (row,) = [line for line in dry.splitlines() if "(no incident)" in line]
    assert "purge" in row and "unattached-purge-after-2555d" in row
    assert "2 events of no incident" in row
    assert "and purge 2 events of no incident" in dry
    done = cli.ok("retention", "run", IM_DATABASE_URL=database_url).stdout
    assert "purged 2 events of no incident (1 tombstones)" in done
    plan = httpx.get(
        f"{server.url}/api/v1/retention/plan", headers={"Authorization": f"Bearer {server.token}"}
    ).json()
    assert plan["unattached"]["events"] == 0
