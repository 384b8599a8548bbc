"""``incidents user`` and ``incidents group``, end to end against a real server on both
backends, and what their grants let a user do on the timeline."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from incidents.app import Container, build_container
from incidents.cli.client import CliError
from incidents.cli.main import app
from incidents.policy.model import ROLES
from tests.conftest import event, grant_access, make_settings
from tests.integration.test_cli import Cli, Server, serve


@dataclass
class Directory:
    """A running server whose CLI token is an admin's, and its container for tokens."""

    server: Server
    container: Container

    def token(self, email: str) -> str:
        _, secret = self.container.tokens.create(email)
        return secret


@pytest.fixture
def directory(database_url: str) -> Iterator[Directory]:
    # No reuse of subjects or decisions, so a grant applies to the very next request.
    container = build_container(make_settings(database_url, policy_cache_seconds=0))
    grant_access(container, "alice@example.com")
    grant_access(container, "admin@example.com", roles=("admin",), attributes=())
    _, token = container.tokens.create("admin@example.com", "cli-identity-tests")
    handle = serve(container, token, database_url)
    try:
        yield Directory(handle, container)
    finally:
        handle.stop()


@pytest.fixture
def cli(directory: Directory, tmp_path: Path) -> Cli:
    home = tmp_path / "config"
    home.mkdir()
    return Cli(directory.server, home)


def fails(cli: Cli, *args: str, **env: str | None) -> str:
    """Run a command expected to fail with a CliError; its message."""
    result = cli.runner.invoke(app, list(args), env=cli.env(**env))
    assert isinstance(result.exception, CliError), (result.exception, result.stdout)
    return str(result.exception)


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def seed(directory: Directory) -> None:
    """INC-1 holds one public and one restricted event."""
    headers = {
        "Authorization": f"Bearer {directory.token('alice@example.com')}",
        "Content-Type": "application/cloudevents+json",
    }
    for n, visibility in ((1, "public"), (2, "restricted")):
        response = httpx.post(
            f"{directory.server.url}/api/v1/timeline/events",
            json=event(n, imvisibility=visibility),
            headers=headers,
        )
        assert response.status_code == 201, response.text


def timeline(directory: Directory, token: str) -> httpx.Response:
    return httpx.get(
        f"{directory.server.url}/api/v1/incidents/INC-1/timeline",
        headers={"Authorization": f"Bearer {token}"},
    )


def visible(directory: Directory, token: str) -> list[str]:
    response = timeline(directory, token)
    assert response.status_code == 200, response.text
    return sorted(e["id"] for e in response.json()["events"])


def test_user_create_list_deactivate(cli: Cli, directory: Directory) -> None:
    done = cli.ok("user", "create", "--email", "Bob@Example.com", "--name", "Bob Builder")
    assert done.stdout.startswith("created user bob@example.com (usr_")
    listed = cli.ok("user", "list").stdout
    for text in ("bob@example.com", "Bob Builder", "admin@example.com", "alice@example.com"):
        assert text in listed
    assert "already exists" in fails(cli, "user", "create", "--email", "bob@example.com")

    bob = directory.token("bob@example.com")
    cli.ok("user", "roles", "add", "--email", "bob@example.com", "--role", "timeline.reader")
    seed(directory)
    assert timeline(directory, bob).status_code == 200
    assert (
        "deactivated bob@example.com"
        in cli.ok("user", "deactivate", "-e", "bob@example.com").stdout
    )
    assert timeline(directory, bob).status_code == 401
    row = next(line for line in cli.ok("user", "list").stdout.splitlines() if "bob@" in line)
    assert " no " in row


def test_user_roles_change_timeline_access(cli: Cli, directory: Directory) -> None:
    """The guide's walk-through: a 403 names the role, the admin grants it, access follows."""
    seed(directory)
    cli.ok("user", "create", "--email", "bob@example.com")
    bob = directory.token("bob@example.com")

    refused = cli.runner.invoke(app, ["timeline", "list", "-i", "INC-1"], env=cli.env(IM_TOKEN=bob))
    assert isinstance(refused.exception, CliError)
    # Bob is no administrator: he is told whom to ask, not a command he cannot run.
    assert "ask an administrator of this server to grant you the timeline.reader role" in str(
        refused.exception
    )
    assert "incidents user roles add" not in str(refused.exception)
    listed = cli.ok("user", "roles", "list", "--email", "bob@example.com")
    assert listed.stdout == ""
    assert "bob@example.com has no roles" in listed.stderr

    done = cli.ok("user", "roles", "add", "--email", "bob@example.com", "--role", "timeline.reader")
    assert done.stdout.strip() == "granted role timeline.reader to bob@example.com"
    assert lines(cli.ok("user", "roles", "list", "--email", "bob@example.com").stdout) == [
        "timeline.reader"
    ]
    assert (
        cli.ok("timeline", "list", "-i", "INC-1", "-o", "json", IM_TOKEN=bob).stdout.count("evt-")
        == 1
    )
    assert visible(directory, bob) == ["evt-1"]

    message = fails(cli, "user", "roles", "add", "--email", "bob@example.com", "--role", "root")
    assert "unknown role 'root'" in message and all(role in message for role in ROLES)
    assert "HTTP 400" in message

    done = cli.ok(
        "user", "roles", "remove", "--email", "bob@example.com", "--role", "timeline.reader"
    )
    assert done.stdout.strip() == "revoked role timeline.reader from bob@example.com"
    assert timeline(directory, bob).status_code == 403
    message = fails(
        cli, "user", "roles", "remove", "-e", "bob@example.com", "-r", "timeline.reader"
    )
    assert "has no role timeline.reader" in message


def test_user_attrs_and_clearance(cli: Cli, directory: Directory) -> None:
    seed(directory)
    cli.ok("user", "create", "--email", "bob@example.com")
    cli.ok("user", "roles", "add", "--email", "bob@example.com", "--role", "timeline.reader")
    bob = directory.token("bob@example.com")
    assert visible(directory, bob) == ["evt-1"]

    assert "has no attributes" in cli.ok("user", "attrs", "list", "-e", "bob@example.com").stderr
    done = cli.ok(
        "user", "attrs", "add", "--email", "bob@example.com", "--attr", "restricted_access"
    )
    assert done.stdout.strip() == "granted attribute restricted_access to bob@example.com"
    assert lines(cli.ok("user", "attrs", "list", "-e", "bob@example.com").stdout) == [
        "restricted_access"
    ]
    assert visible(directory, bob) == ["evt-1", "evt-2"]
    cli.ok("user", "attrs", "remove", "--email", "bob@example.com", "--attr", "restricted_access")
    assert visible(directory, bob) == ["evt-1"]
    assert "has no attribute" in fails(
        cli, "user", "attrs", "remove", "-e", "bob@example.com", "--attr", "restricted_access"
    )
    assert "unknown attribute" in fails(
        cli, "user", "attrs", "add", "-e", "bob@example.com", "--attr", "x_access"
    )

    done = cli.ok("user", "clearance", "set", "--email", "bob@example.com", "restricted")
    assert done.stdout.strip() == "set clearance of bob@example.com to restricted"
    assert visible(directory, bob) == ["evt-1", "evt-2"]
    assert "restricted" in cli.ok("user", "list").stdout
    cli.ok("user", "clearance", "set", "--email", "bob@example.com", "none")
    assert visible(directory, bob) == ["evt-1"]
    assert "unknown clearance" in fails(
        cli, "user", "clearance", "set", "--email", "bob@example.com", "ultra"
    )


def test_groups(cli: Cli, directory: Directory) -> None:
    seed(directory)
    cli.ok("user", "create", "--email", "carol@example.com")
    carol = directory.token("carol@example.com")

    assert cli.ok("group", "create", "oncall").stdout.startswith("created group oncall (grp_")
    assert "already exists" in fails(cli, "group", "create", "oncall")
    cli.ok("group", "roles", "add", "oncall", "--role", "timeline.reader")
    cli.ok("group", "attrs", "add", "oncall", "--attr", "restricted_access")
    assert timeline(directory, carol).status_code == 403

    done = cli.ok("group", "members", "add", "oncall", "--email", "carol@example.com")
    assert done.stdout.strip() == "added carol@example.com to group oncall"
    assert visible(directory, carol) == ["evt-1", "evt-2"]
    shown = cli.ok("group", "show", "oncall").stdout
    assert "roles:      timeline.reader" in shown
    assert "attributes: restricted_access" in shown
    assert "members:    carol@example.com" in shown
    listed = cli.ok("group", "list").stdout
    assert "oncall" in listed and "timeline.reader" in listed

    # Inherited grants show as such, and are changed on the group, not the user.
    assert lines(cli.ok("user", "roles", "list", "-e", "carol@example.com").stdout) == [
        "timeline.reader (from group oncall)"
    ]
    assert lines(cli.ok("user", "attrs", "list", "-e", "carol@example.com").stdout) == [
        "restricted_access (from group oncall)"
    ]
    message = fails(
        cli, "user", "roles", "remove", "-e", "carol@example.com", "-r", "timeline.reader"
    )
    assert "it comes from group oncall" in message

    cli.ok("group", "attrs", "remove", "oncall", "--attr", "restricted_access")
    assert visible(directory, carol) == ["evt-1"]
    assert "has no attribute" in fails(
        cli, "group", "attrs", "remove", "oncall", "--attr", "pii_access"
    )
    done = cli.ok("group", "roles", "remove", "oncall", "--role", "timeline.reader")
    assert done.stdout.strip() == "revoked role timeline.reader from group oncall"
    assert timeline(directory, carol).status_code == 403
    assert "unknown role" in fails(cli, "group", "roles", "add", "oncall", "--role", "boss")

    cli.ok("group", "roles", "add", "oncall", "--role", "timeline.reader")
    assert timeline(directory, carol).status_code == 200
    cli.ok("group", "members", "remove", "oncall", "--email", "carol@example.com")
    assert timeline(directory, carol).status_code == 403
    assert "not a member" in fails(
        cli, "group", "members", "remove", "oncall", "-e", "carol@example.com"
    )

    cli.ok("group", "members", "add", "oncall", "--email", "carol@example.com")
    assert cli.ok("group", "delete", "oncall").stdout.strip() == "deleted group oncall"
    assert timeline(directory, carol).status_code == 403
    assert "no group named 'oncall'" in fails(cli, "group", "show", "oncall")


def test_unknown_names(cli: Cli) -> None:
    assert "no user with email 'nobody@example.com'" in fails(
        cli, "user", "roles", "list", "--email", "nobody@example.com"
    )
    cli.ok("group", "create", "ops")
    assert "no user with email" in fails(
        cli, "group", "members", "add", "ops", "--email", "nobody@example.com"
    )


def test_errors_are_one_line(cli: Cli, directory: Directory) -> None:
    """As the console script: one ``error:`` line and exit 1, never a traceback."""
    alice = directory.token("alice@example.com")
    done = cli.process("user", "list", IM_TOKEN=alice)
    assert done.returncode == 1
    assert lines(done.stderr) == [lines(done.stderr)[0]]
    assert done.stderr.startswith("error: alice@example.com lacks the admin role")
    assert "(HTTP 403)" in done.stderr

    done = cli.process("group", "show", "nope")
    assert (done.returncode, done.stderr) == (1, "error: no group named 'nope'\n")

    done = cli.process("user", "list", IM_TOKEN="im_bogus")
    assert done.returncode == 1
    assert len(lines(done.stderr)) == 1
    assert "IM_TOKEN" in done.stderr and "(HTTP 401)" in done.stderr


def test_help_comes_from_docstrings(cli: Cli) -> None:
    assert "Grant a role to a user." in cli.ok("user", "roles", "add", "--help").stdout
    assert "timeline.reader" in cli.ok("user", "roles", "add", "--help").stdout
    top = cli.ok("--help").stdout
    assert "user" in top and "group" in top
    assert "Add a user to a group." in cli.ok("group", "members", "add", "--help").stdout
