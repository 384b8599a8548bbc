"""``incidents correlation test``: a recorded alert file against a rule set, writing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from incidents.app import build_container
from incidents.cli.correlation import REPLAY_INTEGRATION, load_alerts, load_rules, replay
from incidents.cli.main import app
from incidents.incident.correlation.engine import IngestAlerts
from tests.conftest import make_settings

CONSOLE_SCRIPT = Path(sys.executable).with_name("incidents")

RULES = """\
correlation:
  windows: {absorb: 2h, quiet: 30m, max_lifetime: 24h}
  open_incident_at: SEV-2
  fingerprints:
    - name: rule-service
      fields: [alert_rule, service]
      auto_mitigate: true
    - alert_rule + host + time_window
"""


def am_alert(
    fingerprint: str,
    starts: str,
    *,
    status: str = "firing",
    ends: str = "0001-01-01T00:00:00Z",
    **labels: str,
) -> dict[str, Any]:
    """One entry of an Alertmanager webhook's ``alerts[]``, as its documentation shows."""
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{labels.get('alertname')} on {labels.get('service', '?')}"},
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def payload(status: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    """An Alertmanager v4 webhook payload (with fields newer versions add)."""
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "incidents",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "notification_reason": "new_alerts",
        "alerts": list(alerts),
    }


API_1 = {"alertname": "HighErrorRate", "service": "api", "severity": "critical", "instance": "h1"}
API_2 = {**API_1, "instance": "h2"}
DISK = {"alertname": "DiskFull", "severity": "warning", "instance": "db-1"}

RECORDING = [
    payload(
        "firing",
        am_alert("a1", "2025-12-11T10:00:00Z", **API_1),
        am_alert("a2", "2025-12-11T10:05:00.123456789Z", **API_2),
        am_alert("d1", "2025-12-11T10:06:00Z", **DISK),
    ),
    # The HA peer sends the same notification again.
    payload("firing", am_alert("a1", "2025-12-11T10:00:00Z", **API_1)),
    payload(
        "resolved",
        am_alert(
            "a1", "2025-12-11T10:00:00Z", status="resolved", ends="2025-12-11T10:20:00Z", **API_1
        ),
        am_alert(
            "a2",
            "2025-12-11T10:05:00.123456789Z",
            status="resolved",
            ends="2025-12-11T10:21:00Z",
            **API_2,
        ),
    ),
    # Hours later the same rule fires on another host: past the windows, a new incident.
    payload("firing", am_alert("a3", "2025-12-11T14:00:00Z", **{**API_1, "instance": "h3"})),
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory; the database setting points into it."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "rules.yaml").write_text(RULES)
    (work / "alerts.json").write_text(json.dumps(RECORDING))
    return work


def env(workdir: Path) -> dict[str, str | None]:
    out: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith("IM_") and name != "IM_TEST_POSTGRES"
    }
    out["IM_DATABASE_URL"] = f"sqlite:///{workdir / 'incidents.db'}"
    out["COLUMNS"] = "250"
    return out


def run(workdir: Path, *args: str) -> Result:
    result = CliRunner().invoke(app, ["correlation", "test", *args], env=env(workdir))
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def run_json(workdir: Path, alerts: str = "alerts.json") -> dict[str, Any]:
    result = run(workdir, "--rules", "rules.yaml", "--alerts", alerts, "--output", "json")
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_prints_the_incidents_the_rules_would_create(workdir: Path) -> None:
    doc = run_json(workdir)
    incidents = {i["incident_id"]: i for i in doc["incidents"]}
    assert list(incidents) == ["INC-1", "INC-2"]
    first, second = incidents["INC-1"], incidents["INC-2"]
    assert first["severity"] == "SEV-1"
    assert first["title"] == "HighErrorRate on api"
    # Both api alerts, then all resolved: auto_mitigate of rule-service.
    assert first["alerts"] == ["alertmanager://replay/a1", "alertmanager://replay/a2"]
    assert second["alerts"] == ["alertmanager://replay/a3"]
    assert first["status"] == "mitigated"
    assert second["status"] == "open"
    # The warning stays unattached (below open_incident_at SEV-2).
    assert doc["unattached"] == ["alertmanager://replay/d1"]
    assert doc["duplicates"] == 1
    decisions = doc["decisions"]
    assert [(d["alert_key"], d["decision"], d["incident_id"]) for d in decisions] == [
        ("alertmanager://replay/a1", "opened", "INC-1"),
        ("alertmanager://replay/a1", "duplicate", "INC-1"),
        ("alertmanager://replay/a2", "attached", "INC-1"),
        ("alertmanager://replay/d1", "unattached", None),
        ("alertmanager://replay/a1", "follows-alert", "INC-1"),
        ("alertmanager://replay/a2", "follows-alert", "INC-1"),
        ("alertmanager://replay/a3", "opened", "INC-2"),
    ]
    attached = decisions[2]
    assert attached["rule"] == "rule-service"
    assert attached["fields"] == {"alert_rule": "HighErrorRate", "service": "api"}
    assert attached["time"] == "2025-12-11T10:05:00.123456Z"
    # The disk alert has no service label: that rule was skipped, visibly.
    assert {"rule": "rule-service", "missing": ["service"]} in decisions[3]["skipped_rules"]


def test_writes_nothing(workdir: Path) -> None:
    before = sorted(p.name for p in workdir.iterdir())
    run_json(workdir)
    run(workdir, "--rules", "rules.yaml", "--alerts", "alerts.json")
    assert sorted(p.name for p in workdir.iterdir()) == before
    assert not (workdir / "incidents.db").exists()


def test_table_output_names_incidents_and_decisions(workdir: Path) -> None:
    out = run(workdir, "--rules", "rules.yaml", "--alerts", "alerts.json").stdout
    assert "INC-1" in out and "INC-2" in out
    assert "HighErrorRate on api" in out
    assert "alert_rule=HighErrorRate, service=api" in out
    assert "unattached" in out
    assert "7 alerts: 2 incident(s)" in out


def test_accepts_one_payload_and_json_lines(workdir: Path) -> None:
    (workdir / "one.json").write_text(json.dumps(RECORDING[0]))
    (workdir / "lines.jsonl").write_text("\n".join(json.dumps(p) for p in RECORDING) + "\n")
    one = run_json(workdir, "one.json")
    assert [i["incident_id"] for i in one["incidents"]] == ["INC-1"]
    assert run_json(workdir, "lines.jsonl") == run_json(workdir, "alerts.json")


def test_stricter_rules_change_the_answer(workdir: Path) -> None:
    (workdir / "rules.yaml").write_text(
        RULES.replace("open_incident_at: SEV-2", "open_incident_at: SEV-4")
    )
    doc = run_json(workdir)
    # Now the warning opens an incident of its own.
    assert doc["unattached"] == []
    assert len(doc["incidents"]) == 3


def cli_process(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    merged = dict(os.environ)
    for name, value in env(workdir).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return subprocess.run(
        [str(CONSOLE_SCRIPT), "correlation", "test", *args],
        capture_output=True,
        text=True,
        env=merged,
        cwd=workdir,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ("correlation:\n  fingerprints: [service + service]\n", "a field is listed twice"),
        ("correlation:\n  colour: blue\n", "unknown key 'colour'"),
        ("correlation:\n  windows: {absorb: soon}\n", "correlation.windows.absorb"),
        ("integrations: {}\n", "no 'correlation:' section"),
        ("correlation: [\n", "not valid YAML"),
    ],
)
def test_bad_rules_file_is_one_line_and_a_failure(workdir: Path, rules: str, expected: str) -> None:
    (workdir / "rules.yaml").write_text(rules)
    done = cli_process(workdir, "--rules", "rules.yaml", "--alerts", "alerts.json")
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: rules.yaml")
    assert expected in lines[0]
    assert sorted(p.name for p in workdir.iterdir()) == ["alerts.json", "rules.yaml"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"alerts": [{"status": "firing", "labels": {"a": "b"}}]}', "startsAt: is required"),
        ("[1]", "expected an Alertmanager webhook payload"),
        ("{not json", "is not valid JSON"),
        ('{"receiver": "x"}', "alerts: is required"),
    ],
)
def test_bad_alerts_file_is_one_line_and_a_failure(
    workdir: Path, content: str, expected: str
) -> None:
    (workdir / "alerts.json").write_text(content)
    done = cli_process(workdir, "--rules", "rules.yaml", "--alerts", "alerts.json")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expected in lines[0]


def test_the_replay_decides_as_a_server_on_the_database_would(
    workdir: Path, database_url: str
) -> None:
    ruleset = load_rules(workdir / "rules.yaml")
    recorded = load_alerts(workdir / "alerts.json")
    in_memory = replay(ruleset, recorded).outcomes
    container = build_container(make_settings(database_url))
    container.start()
    try:
        stored = [
            outcome
            for alert in sorted(recorded, key=lambda a: a.time_us)
            for outcome in container.incidents.submit(
                IngestAlerts((alert,), ruleset, REPLAY_INTEGRATION.recorder)
            ).result()
        ]
        incidents = [container.incidents.reader.get(f"INC-{n}") for n in (1, 2, 3)]
    finally:
        container.close()
    assert stored == in_memory
    assert [i.status if i else None for i in incidents] == ["mitigated", "open", None]
