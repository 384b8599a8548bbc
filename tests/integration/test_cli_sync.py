"""``incidents sync``: status, reconcile (dry run and repair), the conflict queue, with
a real server and the local ServiceNow-like API."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from incidents.app import build_container
from incidents.cli.main import app
from incidents.incident.commands import ChangeStatus
from incidents.incident.lifecycle import Status
from tests.conftest import grant_access, make_settings
from tests.contract.sync_support import SN, SN_IDENTITY, declare, sn_entry
from tests.fakes.servicenow import FakeServiceNow
from tests.integration.test_cli import serve

ALICE = "alice@example.com"


def test_sync_cli_end_to_end(database_url: str, snow: FakeServiceNow, tmp_path: Path) -> None:
    connectors = {"servicenow": [sn_entry(snow.url, poll_seconds=3600)]}
    config = tmp_path / "im.yaml"
    config.write_text(yaml.safe_dump({"connectors": connectors}))
    settings = make_settings(database_url, connectors=connectors, outbox_poll_seconds=0.05)
    container = build_container(settings)
    grant_access(container, ALICE)
    grant_access(container, SN_IDENTITY, roles=("incident.reader",), attributes=())
    _, token = container.tokens.create(ALICE)
    server = serve(container, token, database_url)
    env = {
        "IM_CONFIG": str(config),
        "IM_DATABASE_URL": database_url,
        "IM_SERVER": server.url,
        "IM_TOKEN": token,
    }
    runner = CliRunner()
    try:
        incident_id = declare(container, severity="SEV-2")
        for _ in range(200):
            if snow.by_correlation(incident_id):
                break
            __import__("time").sleep(0.05)
        record = snow.by_correlation(incident_id)[0]
        snow.edit(record["sys_id"], urgency="3")

        dry = runner.invoke(app, ["sync", "reconcile", "--dry-run"], env=env)
        assert dry.exit_code == 0, dry.output
        assert "urgency" in dry.output and "1 field(s) drifted" in dry.output
        assert snow.by_correlation(incident_id)[0]["urgency"] == "3"

        repaired = runner.invoke(app, ["sync", "reconcile", "--connector", SN], env=env)
        assert repaired.exit_code == 0, repaired.output
        for _ in range(200):  # the server's relay delivers the queued push
            if snow.by_correlation(incident_id)[0]["urgency"] == "1":
                break
            __import__("time").sleep(0.05)
        assert snow.by_correlation(incident_id)[0]["urgency"] == "1"

        unknown = runner.invoke(app, ["sync", "reconcile", "--connector", "jira:x"], env=env)
        assert unknown.exit_code != 0 and "--connector" in str(unknown.exception)

        status = runner.invoke(app, ["sync", "status", "--json"], env=env)
        assert status.exit_code == 0, status.output
        figures = json.loads(status.output)[SN]
        assert figures["links"] == 1 and figures["open_conflicts"] == 0

        container.incidents.execute(ChangeStatus(incident_id, ALICE, None, target=Status.CANCELED))
        for _ in range(200):
            if snow.by_correlation(incident_id)[0]["state"] == "8":
                break
            __import__("time").sleep(0.05)
        snow.edit(record["sys_id"], state="2")
        assert container.sync is not None
        container.sync.poll(SN)
        listed = runner.invoke(app, ["sync", "conflicts", "list", "--json"], env=env)
        assert listed.exit_code == 0, listed.output
        conflicts = json.loads(listed.output)
        assert [(c["field"], c["theirs"]) for c in conflicts] == [("status", "2")]
        neither = runner.invoke(app, ["sync", "conflicts", "resolve", conflicts[0]["id"]], env=env)
        assert neither.exit_code != 0
        done = runner.invoke(
            app, ["sync", "conflicts", "resolve", conflicts[0]["id"], "--ours"], env=env
        )
        assert done.exit_code == 0, done.output
        assert "resolved: ours" in done.output
    finally:
        server.stop()
