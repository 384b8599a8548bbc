"""The ``incidents`` command line, end to end against a real HTTP server on both backends."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import Result
from typer.testing import CliRunner

from incidents.app import Container, build_container, create_app
from incidents.cli.main import app
from incidents.store.engine import make_engine, writes
from tests.conftest import CONSOLE_SCRIPT, event, free_port, grant_access, make_settings


@dataclass
class Server:
    """A running API server and a token valid on it."""

    url: str
    token: str
    database_url: str
    _server: uvicorn.Server
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the server did not stop"


def serve(container: Container, token: str, database_url: str) -> Server:
    """Run ``container``'s API on a free port in a thread; return once it answers."""
    port = free_port()
    config = uvicorn.Config(
        create_app(container),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    handle = Server(f"http://127.0.0.1:{port}", token, database_url, server, thread)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{handle.url}/healthz", timeout=1).status_code == 200:
                return handle
        except httpx.HTTPError:
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            handle.stop()
            pytest.fail(f"the server on {handle.url} did not start")
        time.sleep(0.05)


@dataclass
class Servers:
    """Starts API servers on free ports; stops every one at teardown."""

    running: list[Server] = field(default_factory=list)

    def start(self, database_url: str) -> Server:
        container = build_container(make_settings(database_url))
        grant_access(container, "alice@example.com")
        _, token = container.tokens.create("alice@example.com", "cli-tests")
        handle = serve(container, token, database_url)
        self.running.append(handle)
        return handle

    def stop_all(self) -> None:
        while self.running:
            self.running.pop().stop()


@pytest.fixture
def servers() -> Iterator[Servers]:
    pool = Servers()
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
def server(servers: Servers, database_url: str) -> Server:
    return servers.start(database_url)


@dataclass
class Target:
    """Where the CLI points: a server URL, a token, and the database behind them."""

    url: str
    token: str
    database_url: str


class Cli:
    """Runs the CLI in process (CliRunner) or as the installed console script (subprocess)."""

    def __init__(self, server: Server | Target, config_home: Path) -> None:
        self.server = server
        self.config_home = config_home
        self.runner = CliRunner()

    def env(self, **overrides: str | None) -> dict[str, str | None]:
        env: dict[str, str | None] = {
            name: None
            for name in os.environ
            if name.startswith("IM_") and name != "IM_TEST_POSTGRES"
        }
        env.update(
            {
                "IM_SERVER": self.server.url,
                "IM_TOKEN": self.server.token,
                "XDG_CONFIG_HOME": str(self.config_home),
                "COLUMNS": "250",
            }
        )
        env.update(overrides)
        return env

    def __call__(self, *args: str, input: str | bytes | None = None, **env: str | None) -> Result:
        result = self.runner.invoke(app, list(args), input=input, env=self.env(**env))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(
                f"incidents {' '.join(args)} raised {result.exception!r}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            ) from result.exception
        return result

    def ok(self, *args: str, input: str | bytes | None = None, **env: str | None) -> Result:
        result = self(*args, input=input, **env)
        assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
        return result

    def process(
        self, *args: str, input: str | None = None, **env: str | None
    ) -> subprocess.CompletedProcess[str]:
        merged = dict(os.environ)
        for name, value in self.env(**env).items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        done = subprocess.run(
            [str(CONSOLE_SCRIPT), *args],
            input=input,
            capture_output=True,
            text=True,
            env=merged,
            timeout=120,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr
        assert "Traceback" not in done.stdout, done.stdout
        return done


@pytest.fixture
def cli(server: Server, tmp_path: Path) -> Cli:
    home = tmp_path / "config"
    home.mkdir()
    return Cli(server, home)


@pytest.fixture
def offline_cli(tmp_path: Path) -> Cli:
    """The CLI pointed at a port nobody listens on, for commands that need no server."""
    home = tmp_path / "config"
    home.mkdir()
    target = Target(
        f"http://127.0.0.1:{free_port()}", "im_unused", f"sqlite:///{tmp_path / 'local.db'}"
    )
    return Cli(target, home)


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    return lines[0]


def listed(cli: Cli, *args: str) -> list[dict[str, Any]]:
    result = cli.ok("timeline", "list", *args, "--output", "json")
    events: list[dict[str, Any]] = json.loads(result.stdout)
    return events


def append_batch(cli: Cli, tmp_path: Path, events: Sequence[dict[str, Any]]) -> Result:
    path = write_json(tmp_path / f"batch-{time.monotonic_ns()}.json", list(events))
    return cli("timeline", "append", str(path))


# --- timeline append -----------------------------------------------------------------------


def test_append_single_event_from_file_and_duplicate(cli: Cli, tmp_path: Path) -> None:
    path = write_json(tmp_path / "one.json", event(1, incident="INC-7"))
    first = cli.ok("timeline", "append", str(path))
    assert first.stdout.strip() == "evt-1: created, incident INC-7"
    again = cli.ok("timeline", "append", str(path))
    assert "evt-1: duplicate" in again.stdout
    assert [e["id"] for e in listed(cli, "--incident", "INC-7")] == ["evt-1"]


def test_append_single_event_from_stdin(cli: Cli) -> None:
    raw = json.dumps(event("stdin", incident="INC-8", im__actor="bob@example.com"))
    result = cli.ok("timeline", "append", "-", input=raw)
    assert "evt-stdin: created, incident INC-8" in result.stdout
    # The file argument defaults to stdin.
    again = cli.ok("timeline", "append", input=raw)
    assert "evt-stdin: duplicate" in again.stdout
    [stored] = listed(cli, "--incident", "INC-8")
    assert stored["actor"] == "bob@example.com"
    assert stored["recorded_by"] == "alice@example.com"


def test_append_64_kib_event_from_file(cli: Cli, tmp_path: Path) -> None:
    big = event("big", incident="INC-64", data={"note": "x" * (64 * 1024)})
    path = write_json(tmp_path / "big.json", big)
    assert path.stat().st_size > 64 * 1024
    assert "evt-big: created" in cli.ok("timeline", "append", str(path)).stdout
    stored = json.loads(cli.ok("timeline", "get", "evt-big").stdout)
    assert stored["data"] == {"note": "x" * (64 * 1024)}


def test_append_batch_from_stdin_reports_each_event(cli: Cli) -> None:
    batch = [event(n, incident="INC-9") for n in range(1, 4)]
    first = cli.ok("timeline", "append", "-", input=json.dumps(batch))
    assert first.stdout.splitlines() == ["evt-1: created", "evt-2: created", "evt-3: created"]
    assert "3 created, 0 duplicates, 0 conflicts, 0 rejected" in first.stderr
    batch.append(event(4, incident="INC-9"))
    second = cli.ok("timeline", "append", "-", input=json.dumps(batch))
    assert second.stdout.splitlines() == [
        "evt-1: duplicate (already stored)",
        "evt-2: duplicate (already stored)",
        "evt-3: duplicate (already stored)",
        "evt-4: created",
    ]
    assert "1 created, 3 duplicates, 0 conflicts, 0 rejected" in second.stderr


def test_append_batch_with_a_rejected_event_exits_1(cli: Cli, tmp_path: Path) -> None:
    batch = [event(1, incident="INC-10"), event(2, specversion="0.3"), event(3, incident="INC-10")]
    path = write_json(tmp_path / "batch.json", batch)
    done = cli.process("timeline", "append", str(path))
    assert done.returncode == 1
    assert done.stdout.splitlines() == ["evt-1: created", "evt-3: created"]
    assert "#1: rejected:" in done.stderr
    assert "specversion" in done.stderr
    assert "2 created, 0 duplicates, 0 conflicts, 1 rejected" in done.stderr
    # The good events of the batch are stored all the same.
    assert [e["id"] for e in listed(cli, "--incident", "INC-10")] == ["evt-1", "evt-3"]


def test_append_batch_with_a_conflict_exits_1(cli: Cli, tmp_path: Path) -> None:
    cli.ok("timeline", "append", "-", input=json.dumps(event(1, incident="INC-11")))
    changed = event(1, incident="INC-11", data={"note": "rewritten"})
    result = append_batch(cli, tmp_path, [changed, event(2, incident="INC-11")])
    assert result.exit_code == 1
    assert "1 created, 0 duplicates, 1 conflicts, 0 rejected" in result.stderr


def test_append_single_invalid_event_is_one_error_line(cli: Cli, tmp_path: Path) -> None:
    path = write_json(tmp_path / "bad.json", event(1, time="yesterday", specversion="0.3"))
    done = cli.process("timeline", "append", str(path))
    assert done.returncode == 1
    line = one_error_line(done)
    assert "time" in line
    assert "specversion" in line
    assert "HTTP 400" in line


def test_append_conflicting_single_event_is_an_error(cli: Cli, tmp_path: Path) -> None:
    cli.ok("timeline", "append", input=json.dumps(event(1, incident="INC-12")))
    path = write_json(tmp_path / "changed.json", event(1, incident="INC-12", data={"x": 1}))
    done = cli.process("timeline", "append", str(path))
    assert done.returncode == 1
    assert "HTTP 409" in one_error_line(done)


def test_append_invalid_json_file(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"specversion": "1.0", ')
    done = cli.process("timeline", "append", str(path))
    assert done.returncode == 1
    line = one_error_line(done)
    assert "broken.json" in line
    assert "not valid JSON" in line


def test_append_missing_file(cli: Cli, tmp_path: Path) -> None:
    done = cli.process("timeline", "append", str(tmp_path / "nope.json"))
    assert done.returncode == 1
    assert "nope.json" in one_error_line(done)


# --- timeline list -------------------------------------------------------------------------


@pytest.fixture
def incident(cli: Cli) -> str:
    """INC-42 with five events of several types, times and actors."""
    events = [
        event(
            1,
            incident="INC-42",
            type_="im.incident.declare",
            time="2025-12-11T10:00:00Z",
            data={"title": "Database down", "content": "Primary is unreachable"},
            im__actor="alice@example.com",
        ),
        event(
            2,
            incident="INC-42",
            type_="im.alert.trigger",
            time="2025-12-11T10:05:00Z",
            imactor="pagerduty",
        ),
        event(
            3,
            incident="INC-42",
            type_="im.note.add",
            time="2025-12-11T10:10:00+01:00",
            data={"note": "failover started"},
            im__actor="bob@example.com",
        ),
        event(
            4,
            incident="INC-42",
            type_="com.incidents.state_change.v1",
            time="2025-12-11T10:20:00Z",
            im__actor="bob@example.com",
        ),
        event(
            5,
            incident="INC-42",
            type_="im.incident.resolve",
            time="2025-12-11T10:30:00Z",
            data={"content": "# Fixed\nReplica promoted"},
            im__actor="alice@example.com",
        ),
    ]
    result = cli.ok("timeline", "append", "-", input=json.dumps(events))
    assert "5 created" in result.stderr
    return "INC-42"


def test_list_table(cli: Cli, incident: str) -> None:
    result = cli.ok("timeline", "list", "--incident", incident)
    out = result.stdout
    assert f"Timeline {incident}" in out
    for text in (
        "2025-12-11T09:10:00Z",
        "im.incident.declare",
        "im.incident.state_change",
        "Database down",
        "Status Changed",
        "pagerduty",
        "evt-5",
    ):
        assert text in out
    rows = [line for line in out.splitlines() if "evt-" in line]
    assert [r.split("evt-")[1][:1] for r in rows] == ["3", "1", "2", "4", "5"]


def test_list_json_pretty(cli: Cli, incident: str) -> None:
    result = cli.ok("timeline", "list", "-i", incident, "--output", "json", "--pretty")
    assert result.stdout.startswith("[\n  {")
    events = json.loads(result.stdout)
    assert [e["id"] for e in events] == ["evt-3", "evt-1", "evt-2", "evt-4", "evt-5"]
    first = events[1]
    assert first["incident_id"] == incident
    assert first["event_type"] == "im.incident.declare"
    assert first["title"] == "Database down"
    assert first["content"] == "Primary is unreachable"
    assert first["actor"] == "alice@example.com"
    assert first["event_time"] == "2025-12-11T10:00:00Z"


def test_list_filters(cli: Cli, incident: str) -> None:
    def ids(*args: str) -> list[str]:
        return [e["id"] for e in listed(cli, "--incident", incident, *args)]

    assert ids("--type", "im.incident.*") == ["evt-1", "evt-4", "evt-5"]
    assert ids("--type", "im.note.add", "--type", "im.alert.trigger") == ["evt-3", "evt-2"]
    assert ids("--from", "2025-12-11T10:05:00Z", "--to", "2025-12-11T10:20:00Z") == [
        "evt-2",
        "evt-4",
    ]
    assert ids("--from", "2025-12-11T11:05:00+01:00") == ["evt-2", "evt-4", "evt-5"]
    assert ids("--actor", "bob@example.com") == ["evt-3", "evt-4"]
    assert ids("--actor", "bob@example.com", "--type", "im.incident.*") == ["evt-4"]
    assert ids("--order", "desc", "--limit", "2") == ["evt-5", "evt-4"]
    assert ids("--actor", "nobody") == []


def test_list_no_match_says_so(cli: Cli, incident: str) -> None:
    result = cli.ok("timeline", "list", "--incident", incident, "--actor", "nobody")
    assert "no events match" in result.stderr


def test_list_bad_time_filter_is_an_error(cli: Cli, incident: str) -> None:
    done = cli.process("timeline", "list", "--incident", incident, "--from", "2025-12-11")
    assert done.returncode == 1
    line = one_error_line(done)
    assert "from" in line
    assert "HTTP 400" in line


def test_list_paginates_over_more_than_1000_events(cli: Cli, tmp_path: Path) -> None:
    total = 2345
    # Many events share a timestamp, so page boundaries fall inside groups of equal times.
    events = [
        event(
            n,
            incident="INC-BIG",
            time=f"2025-12-11T10:{(n // 60) % 60:02d}:{(n // 7) % 60:02d}Z",
            type_="im.note.add" if n % 3 else "im.alert.trigger",
            im__actor=f"user{n % 4}@example.com",
        )
        for n in range(total)
    ]
    result = append_batch(cli, tmp_path, events)
    assert result.exit_code == 0, result.stderr
    assert f"{total} created" in result.stderr

    everything = listed(cli, "--incident", "INC-BIG")
    ids = [e["id"] for e in everything]
    assert len(ids) == total
    assert sorted(ids) == sorted(f"evt-{n}" for n in range(total))
    keys = [(e["event_time"], e["position"]) for e in everything]
    assert keys == sorted(keys)

    newest_first = [e["id"] for e in listed(cli, "--incident", "INC-BIG", "--order", "desc")]
    assert newest_first == ids[::-1]

    alerts = listed(cli, "--incident", "INC-BIG", "--type", "im.alert.trigger")
    assert sorted(e["id"] for e in alerts) == sorted(f"evt-{n}" for n in range(0, total, 3))

    user1 = listed(cli, "--incident", "INC-BIG", "--actor", "user1@example.com")
    assert sorted(e["id"] for e in user1) == sorted(f"evt-{n}" for n in range(1, total, 4))

    limited = listed(cli, "--incident", "INC-BIG", "--limit", "1500")
    assert [e["id"] for e in limited] == ids[:1500]


# --- timeline get --------------------------------------------------------------------------


def test_get_event(cli: Cli, incident: str) -> None:
    result = cli.ok("timeline", "get", "evt-1")
    stored = json.loads(result.stdout)
    assert stored["specversion"] == "1.0"
    assert stored["id"] == "evt-1"
    assert stored["type"] == "im.incident.declare"
    assert stored["imactor"] == "alice@example.com"
    assert stored["imincidentid"] == incident
    assert stored["imrecordedby"] == "alice@example.com"
    assert stored["data"] == {"title": "Database down", "content": "Primary is unreachable"}
    dotted = json.loads(cli.ok("timeline", "get", "evt-1", "--dialect", "dotted").stdout)
    assert dotted["im.actor"] == "alice@example.com"
    assert "imactor" not in dotted
    with_source = json.loads(cli.ok("timeline", "get", "evt-3", "--source", "im://tests").stdout)
    assert with_source["time"] == "2025-12-11T09:10:00Z"


def test_get_unknown_event(cli: Cli, incident: str) -> None:
    done = cli.process("timeline", "get", "evt-nope")
    assert done.returncode == 1
    line = one_error_line(done)
    assert "evt-nope" in line
    assert "HTTP 404" in line


# --- timeline export -----------------------------------------------------------------------


def test_export_json_to_file(cli: Cli, incident: str, tmp_path: Path) -> None:
    target = tmp_path / "out" / "timeline.json"
    target.parent.mkdir()
    result = cli.ok("timeline", "export", "-i", incident, "--format", "json", "-o", str(target))
    assert f"exported 5 events to {target}" in result.stderr
    exported = json.loads(target.read_text())
    assert isinstance(exported, list)
    assert len(exported) == 5
    assert [e["id"] for e in exported] == ["evt-3", "evt-1", "evt-2", "evt-4", "evt-5"]
    assert all(e["specversion"] == "1.0" for e in exported)
    assert exported[3]["type"] == "im.incident.state_change"
    # No temporary file is left behind.
    assert [p.name for p in target.parent.iterdir()] == ["timeline.json"]


def test_export_json_dotted_dialect(cli: Cli, incident: str, tmp_path: Path) -> None:
    target = tmp_path / "dotted.json"
    cli.ok("timeline", "export", "-i", incident, "--dialect", "dotted", "--output", str(target))
    exported = json.loads(target.read_text())
    assert exported[0]["im.actor"] == "bob@example.com"


def test_export_markdown_to_file(cli: Cli, incident: str, tmp_path: Path) -> None:
    target = tmp_path / "timeline.md"
    cli.ok("timeline", "export", "--incident", incident, "--format", "md", "--output", str(target))
    text = target.read_text()
    assert text.startswith(f"# Incident Timeline: {incident}\n")
    assert "**Events**: 5\n" in text
    assert "**Generated**: " in text
    assert text.count("\n### ") == 5
    assert "### 2025-12-11T10:00:00Z - Incident Declared" in text
    assert "Database down" in text
    assert "**Actor**: pagerduty" in text
    # Text from an event cannot forge a heading of the report.
    assert "\n# Fixed" not in text
    assert "\\# Fixed" in text


def test_export_to_stdout(cli: Cli, incident: str) -> None:
    json_out = cli.ok("timeline", "export", "-i", incident)
    assert [e["id"] for e in json.loads(json_out.stdout)] == [
        "evt-3",
        "evt-1",
        "evt-2",
        "evt-4",
        "evt-5",
    ]
    md_out = cli.ok("timeline", "export", "-i", incident, "-f", "md")
    assert md_out.stdout.startswith(f"# Incident Timeline: {incident}")
    assert "**Events**: 5" in md_out.stdout


def test_export_stored_as_an_artifact(cli: Cli, incident: str) -> None:
    stored = cli.ok("timeline", "export", "-i", incident, "--store")
    line = stored.stdout.strip()
    assert line.startswith(f"stored {incident}-timeline-") and f"of {incident}" in line
    digest = line.split(" as artifact ")[1].split()[0]
    downloaded = httpx.get(
        f"{cli.server.url}/api/v1/incidents/{incident}/artifacts/{digest}",
        headers={"Authorization": f"Bearer {cli.server.token}"},
    )
    assert downloaded.status_code == 200
    assert [e["id"] for e in json.loads(downloaded.content)][:5] == [
        "evt-3",
        "evt-1",
        "evt-2",
        "evt-4",
        "evt-5",
    ]
    refused = cli.process("timeline", "export", "-i", incident, "--store", "-o", "x.json")
    assert refused.returncode == 1 and "--store" in one_error_line(refused)


def test_export_large_timeline_to_file(cli: Cli, tmp_path: Path) -> None:
    total = 1234
    result = append_batch(cli, tmp_path, [event(n, incident="INC-EXP") for n in range(total)])
    assert result.exit_code == 0, result.stderr
    target = tmp_path / "big.json"
    cli.ok("timeline", "export", "-i", "INC-EXP", "-o", str(target))
    exported = json.loads(target.read_text())
    assert len(exported) == total
    assert len({e["id"] for e in exported}) == total
    md = tmp_path / "big.md"
    cli.ok("timeline", "export", "-i", "INC-EXP", "-f", "md", "-o", str(md))
    text = md.read_text()
    assert f"**Events**: {total}\n" in text
    assert text.count("\n### ") == total


def test_export_unknown_incident_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "none.json"
    done = cli.process("timeline", "export", "-i", "INC-NOPE", "-o", str(target))
    assert done.returncode == 1
    assert "INC-NOPE" in one_error_line(done)
    assert list(tmp_path.glob("*none.json*")) == []


# --- timeline verify -----------------------------------------------------------------------


def test_verify_intact_chain(cli: Cli, incident: str) -> None:
    result = cli.ok("timeline", "verify", "--incident", incident)
    assert result.stdout.strip() == f"{incident}: chain intact, 5 events"


def test_verify_intact_chain_exit_code(cli: Cli, incident: str) -> None:
    done = cli.process("timeline", "verify", "-i", incident)
    assert done.returncode == 0
    assert "chain intact" in done.stdout
    assert done.stderr == ""


# --- login -------------------------------------------------------------------------------


def test_login_saves_credentials_for_later_commands(cli: Cli, incident: str) -> None:
    server = cli.server
    result = cli.ok(
        "login",
        "--server",
        server.url + "/",
        "--token",
        server.token,
        IM_TOKEN=None,
        IM_SERVER=None,
    )
    path = cli.config_home / "incidents" / "credentials.json"
    assert f"as alice@example.com (saved in {path})" in result.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved == {"server": server.url, "token": server.token}

    later = cli.ok("timeline", "verify", "-i", incident, IM_TOKEN=None, IM_SERVER=None)
    assert "chain intact" in later.stdout
    done = cli.process(
        "timeline", "list", "-i", incident, "-o", "json", IM_TOKEN=None, IM_SERVER=None
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 5


def test_login_with_a_bad_token_saves_nothing(cli: Cli) -> None:
    done = cli.process(
        "login", "--server", cli.server.url, "--token", "im_not-a-real-token", IM_TOKEN=None
    )
    assert done.returncode == 1
    line = one_error_line(done)
    assert "HTTP 401" in line
    assert not (cli.config_home / "incidents" / "credentials.json").exists()


def test_environment_token_overrides_the_saved_one(cli: Cli, incident: str) -> None:
    cli.ok("login", "--server", cli.server.url, "--token", cli.server.token, IM_TOKEN=None)
    done = cli.process("timeline", "verify", "-i", incident, IM_TOKEN="im_wrong")
    assert done.returncode == 1
    assert "HTTP 401" in one_error_line(done)


# --- admin -------------------------------------------------------------------------------


def test_admin_token_create_list_revoke(cli: Cli, servers: Servers, incident: str) -> None:
    db = cli.server.database_url
    created = cli.ok(
        "admin",
        "token",
        "create",
        "--user",
        "carol@example.com",
        "--name",
        "laptop",
        "--role",
        "timeline.exporter",
        IM_DATABASE_URL=db,
    )
    secret = created.stdout.strip()
    assert secret.startswith("im_")
    assert len(created.stdout.splitlines()) == 1
    assert "carol@example.com" in created.stderr
    token_id = created.stderr.split()[1]
    assert token_id.startswith("tok_")

    listing = cli.ok("admin", "token", "list", IM_DATABASE_URL=db).stdout
    assert token_id in listing
    assert "carol@example.com" in listing
    assert "laptop" in listing
    assert "active" in listing
    assert secret not in listing
    only_carol = cli.ok("admin", "token", "list", "--user", "carol@example.com", IM_DATABASE_URL=db)
    assert "alice@example.com" not in only_carol.stdout

    works = cli.ok("timeline", "verify", "-i", incident, IM_TOKEN=secret)
    assert "chain intact" in works.stdout

    revoked = cli.ok("admin", "token", "revoke", token_id, IM_DATABASE_URL=db)
    assert revoked.stdout.strip() == f"revoked {token_id} (carol@example.com)"
    assert "revoked 20" in cli.ok("admin", "token", "list", IM_DATABASE_URL=db).stdout

    fresh = servers.start(db)
    done = cli.process("timeline", "verify", "-i", incident, IM_TOKEN=secret, IM_SERVER=fresh.url)
    assert done.returncode == 1
    line = one_error_line(done)
    assert "revoked" in line
    assert "IM_TOKEN" in line


def test_admin_revoke_unknown_token(cli: Cli) -> None:
    done = cli.process(
        "admin", "token", "revoke", "tok_000000000000", IM_DATABASE_URL=cli.server.database_url
    )
    assert done.returncode == 1
    assert "tok_000000000000" in one_error_line(done)


def test_admin_create_needs_a_user(cli: Cli) -> None:
    done = cli.process(
        "admin", "token", "create", "--user", "  ", IM_DATABASE_URL=cli.server.database_url
    )
    assert done.returncode == 1
    one_error_line(done)


# --- config ------------------------------------------------------------------------------


def test_config_show_masks_the_database_password(offline_cli: Cli) -> None:
    url = "postgresql://incidents:s3cr3t-pw@db.example.com:5432/incidents"
    result = offline_cli.ok("config", "show", IM_DATABASE_URL=url, IM_PORT="9090")
    assert "s3cr3t-pw" not in result.stdout
    shown = json.loads(result.stdout)
    assert shown["database_url"] == "postgresql://incidents:***@db.example.com:5432/incidents"
    assert shown["port"] == 9090


def test_config_show_masks_a_password_given_as_query_parameter(offline_cli: Cli) -> None:
    url = "postgresql://incidents@db.example.com/incidents?password=s3cr3t-pw"
    result = offline_cli.ok("config", "show", IM_DATABASE_URL=url)
    assert "s3cr3t-pw" not in result.stdout


def test_config_error_is_one_line(offline_cli: Cli) -> None:
    done = offline_cli.process("config", "show", IM_DATABASE_URL="mysql://u:s3cr3t@h/db")
    assert done.returncode == 1
    line = one_error_line(done)
    assert line.startswith("error: configuration: IM_DATABASE_URL")
    assert "s3cr3t" not in line


# --- error paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("timeline", "list", "--incident", "INC-NOPE"),
        ("timeline", "verify", "--incident", "INC-NOPE"),
        ("timeline", "export", "--incident", "INC-NOPE"),
    ],
)
def test_unknown_incident(cli: Cli, command: tuple[str, ...]) -> None:
    done = cli.process(*command)
    assert done.returncode == 1
    line = one_error_line(done)
    assert "INC-NOPE" in line
    assert "HTTP 404" in line
    assert done.stdout == ""


def test_bad_token_gives_a_hint(cli: Cli, incident: str) -> None:
    done = cli.process("timeline", "list", "-i", incident, IM_TOKEN="im_bogus")
    assert done.returncode == 1
    line = one_error_line(done)
    assert "HTTP 401" in line
    assert "IM_TOKEN" in line
    assert "incidents login" in line


def test_missing_token_gives_a_hint(cli: Cli, incident: str) -> None:
    done = cli.process("timeline", "list", "-i", incident, IM_TOKEN=None)
    assert done.returncode == 1
    line = one_error_line(done)
    assert "HTTP 401" in line
    assert "incidents admin token create" in line


@pytest.mark.parametrize(
    "command",
    [
        ("timeline", "list", "-i", "INC-1"),
        ("timeline", "get", "evt-1"),
        ("timeline", "export", "-i", "INC-1"),
        ("timeline", "verify", "-i", "INC-1"),
    ],
)
def test_unreachable_server(offline_cli: Cli, command: tuple[str, ...]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = offline_cli.process(*command, IM_SERVER=url)
    assert done.returncode == 1
    line = one_error_line(done)
    assert url in line
    assert "cannot reach the server" in line


def test_unreachable_server_on_append(offline_cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = offline_cli.process("timeline", "append", "-", input=json.dumps(event()), IM_SERVER=url)
    assert done.returncode == 1
    assert url in one_error_line(done)


def test_unreachable_server_on_login(offline_cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = offline_cli.process("login", "--server", url, "--token", offline_cli.server.token)
    assert done.returncode == 1
    assert url in one_error_line(done)
    assert not (offline_cli.config_home / "incidents" / "credentials.json").exists()


def test_version(offline_cli: Cli) -> None:
    done = offline_cli.process("version")
    assert done.returncode == 0
    assert done.stdout.strip() == "0.1.0"


def test_admin_with_an_unreachable_database_is_one_error_line(offline_cli: Cli) -> None:
    db = f"postgresql://nobody@127.0.0.1:{free_port()}/incidents"
    done = offline_cli.process("admin", "token", "list", IM_DATABASE_URL=db)
    assert done.returncode == 1
    one_error_line(done)


def test_append_file_that_is_not_utf8(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe{")
    done = cli.process("timeline", "append", str(path))
    assert done.returncode == 1
    assert "binary.json" in one_error_line(done)


def test_export_into_a_missing_directory(cli: Cli, incident: str, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out.json"
    done = cli.process("timeline", "export", "-i", incident, "-o", str(target))
    assert done.returncode == 1
    assert "is not a directory" in one_error_line(done)
    assert not target.parent.exists()


def test_verify_tampered_chain_exits_3(cli: Cli, incident: str) -> None:
    engine = make_engine(cli.server.database_url)
    try:
        with writes(engine).begin() as conn:
            # Go around the append-only triggers, as someone with direct database access could.
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("DROP TRIGGER timeline_events_no_update")
            else:
                conn.exec_driver_sql("ALTER TABLE timeline_events DISABLE TRIGGER USER")
            conn.exec_driver_sql(
                "UPDATE timeline_events SET actor = 'mallory' WHERE event_id = 'evt-2'"
            )
            position = conn.exec_driver_sql(
                "SELECT position FROM timeline_events WHERE event_id = 'evt-2'"
            ).scalar_one()
    finally:
        engine.dispose()
    done = cli.process("timeline", "verify", "-i", incident)
    assert done.returncode == 3
    assert done.stdout == ""
    assert f"{incident}: chain BROKEN at position {position}" in done.stderr


def test_admin_token_create_warns_when_it_creates_a_new_database(offline_cli: Cli) -> None:
    db = offline_cli.server.database_url
    first = offline_cli.ok(
        "admin", "token", "create", "--user", "dan@example.com", IM_DATABASE_URL=db
    )
    assert first.stdout.strip().startswith("im_")
    assert "warning:" in first.stderr and "new, empty database" in first.stderr
    assert "IM_DATABASE_URL" in first.stderr
    again = offline_cli.ok(
        "admin", "token", "create", "--user", "dan@example.com", IM_DATABASE_URL=db
    )
    assert "warning:" not in again.stderr


def test_admin_token_create_with_an_unknown_role_stores_nothing(offline_cli: Cli) -> None:
    db = offline_cli.server.database_url
    done = offline_cli.process(
        "admin",
        "token",
        "create",
        "--user",
        "eve@example.com",
        "--role",
        "nope",
        IM_DATABASE_URL=db,
    )
    assert done.returncode == 1
    assert "unknown role 'nope'" in one_error_line(done)
    # Refused before the database was opened: no user, not even a new database file.
    assert not Path(db.removeprefix("sqlite:///")).exists()
