"""``incidents incident ...`` against a running API server, on both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from incidents.app import build_container
from tests.conftest import grant_access, make_settings
from tests.integration.test_cli import Cli, Server, one_error_line, serve


@pytest.fixture
def commander_server(database_url: str) -> Iterator[Server]:
    container = build_container(make_settings(database_url))
    grant_access(container, "cora@example.com", ("incident.commander",))
    _, token = container.tokens.create("cora@example.com", "cli-tests")
    handle = serve(container, token, database_url)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def icli(commander_server: Server, tmp_path: Path) -> Cli:
    home = tmp_path / "config"
    home.mkdir()
    return Cli(commander_server, home)


def _json(cli: Cli, *args: str) -> Any:
    return json.loads(cli.ok(*args, "--output", "json").stdout)


def test_declare_work_and_close_an_incident(icli: Cli) -> None:
    out = icli.ok(
        "incident",
        "declare",
        "Checkout errors",
        "--sev",
        "SEV-2",
        "--service",
        "checkout",
        "--label",
        "team=payments",
    ).stdout
    assert out.startswith("INC-1 declared: INC-1  open")
    assert "SEV-2 [checkout]  Checkout errors" in out

    assert "acknowledged" in icli.ok("incident", "ack", "INC-1", "--note", "looking").stdout
    assert "SEV-1" in icli.ok("incident", "escalate", "INC-1").stdout
    icli.ok("incident", "assign", "INC-1", "--role", "commander", "--user", "cora@example.com")
    icli.ok("incident", "assign", "INC-1", "--user", "rob@example.com")
    assert "note " in icli.ok("incident", "note", "INC-1", "Rolled back release 4.2").stdout
    moved = icli.ok("incident", "status", "INC-1", "resolved", "--reason", "rollback").stdout
    assert "moved: INC-1  resolved" in moved

    shown = icli.ok("incident", "show", "INC-1").stdout
    assert "INC-1: Checkout errors" in shown
    assert "commander=cora@example.com" in shown
    assert "rob@example.com" in shown
    assert "Next moves" in shown and "closed, open" in shown
    # The latest timeline entries, oldest of them first.
    tail = shown.split("timeline entries:")[1]
    assert (
        tail.index("im.incident.declare")
        < tail.index("im.note.add")
        < tail.index("im.incident.resolve")
    )

    data = _json(icli, "incident", "show", "INC-1", "--events", "3")
    assert data["incident"]["status"] == "resolved"
    assert [e["event_type"] for e in data["latest_events"]] == [
        "im.incident.assign",
        "im.note.add",
        "im.incident.resolve",
    ]
    icli.ok("incident", "status", "INC-1", "closed")
    assert _json(icli, "incident", "show", "INC-1")["incident"]["closed_at"]


def test_list_filters(icli: Cli) -> None:
    icli.ok("incident", "declare", "Search slow", "--sev", "SEV-3", "--service", "search")
    icli.ok("incident", "declare", "Checkout down", "--sev", "SEV-1", "--service", "checkout")
    icli.ok("incident", "status", "INC-1", "mitigated")
    assert [i["id"] for i in _json(icli, "incident", "list")] == ["INC-2", "INC-1"]
    assert [i["id"] for i in _json(icli, "incident", "list", "--status", "mitigated")] == ["INC-1"]
    assert [i["id"] for i in _json(icli, "incident", "list", "-q", "checkout")] == ["INC-2"]
    assert [i["id"] for i in _json(icli, "incident", "list", "--limit", "1")] == ["INC-2"]
    table = icli.ok("incident", "list", "--sev", "SEV-1").stdout
    assert "INC-2" in table and "INC-1" not in table
    assert "no incidents match" in icli("incident", "list", "--service", "nope").stderr


def test_merge_and_related(icli: Cli) -> None:
    icli.ok("incident", "declare", "Region down")
    icli.ok("incident", "declare", "Checkout down", "--parent", "INC-1")
    icli.ok("incident", "declare", "Checkout down (dup)")
    assert "merged into INC-2" in icli.ok("incident", "merge", "INC-3", "--into", "INC-2").stdout
    family = icli.ok("incident", "related", "INC-2").stdout
    assert "Parent:\n  INC-1" in family and "Merged from:\n  INC-3" in family
    assert "Merged into:\n  INC-2" in icli.ok("incident", "related", "INC-3").stdout
    icli.ok("incident", "declare", "Alone")
    assert "INC-4 has no related incidents" in icli.ok("incident", "related", "INC-4").stdout


def test_errors_are_one_line_and_non_zero(icli: Cli) -> None:
    icli.ok("incident", "declare", "Disk full")
    bad_move = icli.process("incident", "status", "INC-1", "closed")
    assert bad_move.returncode != 0
    line = one_error_line(bad_move)
    assert "Allowed from open: mitigated, resolved, canceled" in line and "HTTP 409" in line
    missing = icli.process("incident", "show", "INC-404")
    assert missing.returncode != 0 and "no incident 'INC-404'" in one_error_line(missing)
    label = icli.process("incident", "declare", "x", "--label", "novalue")
    assert label.returncode == 2 and "KEY=VALUE" in one_error_line(label)
    role = icli.process("incident", "assign", "INC-1", "--role", "commander")
    assert role.returncode == 2 and "--user" in one_error_line(role)
    sev = icli.process("incident", "declare", "x", "--sev", "SEV-9")
    assert sev.returncode != 0 and "SEV-1 ... SEV-4" in one_error_line(sev)


def test_show_says_when_an_incident_was_canceled(icli: Cli) -> None:
    icli.ok("incident", "declare", "False alarm")
    assert "Canceled" not in icli.ok("incident", "show", "INC-1").stdout
    icli.ok("incident", "status", "INC-1", "canceled")
    shown = icli.ok("incident", "show", "INC-1").stdout
    line = next(row for row in shown.splitlines() if row.strip().startswith("Canceled"))
    assert line.split()[1].startswith("20") and line.split()[1].endswith("Z")
