"""``incidents correlation test``: replay recorded alerts against a rule set, in memory.

The replay runs the server's own appender, projection session and correlation
engine on an in-memory log (:class:`~incidents.store.memory_writer.MemoryWriter`),
so its answer is the server's answer for the same alerts and rules, and nothing is
written anywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from rich.console import Console
from rich.table import Table

from incidents.cli.client import CliError
from incidents.events.timeformat import format_micros
from incidents.incident.aggregate import Incident
from incidents.incident.correlation.alert import TRIGGER, Alert
from incidents.incident.correlation.engine import AlertOutcome, IngestAlerts
from incidents.incident.correlation.rules import CorrelationRules, RulesError, parse_rules
from incidents.integrations.alertmanager.inbound import ALERTMANAGER, alerts_from_payload
from incidents.integrations.credentials import Integration
from incidents.integrations.payload import PayloadError
from incidents.store.memory_writer import MemoryWriter

app = typer.Typer(help="Try correlation rules before they go live.", no_args_is_help=True)

# Recorded alerts are replayed as if delivered by an integration of this name.
REPLAY_INTEGRATION = Integration(ALERTMANAGER, "replay", ())


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def load_rules(path: Path) -> CorrelationRules:
    """The rule set of a YAML file's ``correlation:`` section (the config file's shape)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise CliError(f"{path} is not valid YAML{line}") from None
    if not isinstance(document, dict) or "correlation" not in document:
        raise CliError(f"{path}: no 'correlation:' section (the shape of the config file's)")
    try:
        return parse_rules(document["correlation"])
    except RulesError as exc:
        raise CliError(f"{path}: {exc}") from None


def _payloads(path: Path, raw: str) -> list[tuple[str, Any]]:
    """(where, payload) pairs: one payload, a JSON array of them, or JSON Lines."""
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as whole:
        found: list[tuple[str, Any]] = []
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                found.append((f"{path}:{number}", json.loads(line)))
            except json.JSONDecodeError:
                if number == 1:
                    raise CliError(f"{path} is not valid JSON: {whole}") from None
                raise CliError(f"{path}:{number} is not a JSON value") from None
        return found
    if isinstance(document, list):
        return [(f"{path}[{i}]", item) for i, item in enumerate(document)]
    return [(str(path), document)]


def load_alerts(path: Path) -> list[Alert]:
    """Every alert of a recorded file of Alertmanager webhook payloads."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"{path} is not UTF-8 text") from None
    alerts: list[Alert] = []
    for where, payload in _payloads(path, raw):
        if not isinstance(payload, dict):
            raise CliError(f"{where}: expected an Alertmanager webhook payload (an object)")
        try:
            alerts.extend(alerts_from_payload(payload, REPLAY_INTEGRATION))
        except PayloadError as exc:
            raise CliError(f"{where}: {exc}") from None
    return alerts


@dataclass(frozen=True, slots=True)
class Replay:
    """What a rule set did with a recording: the outcomes and the resulting state."""

    alerts: list[Alert]
    outcomes: list[AlertOutcome]
    writer: MemoryWriter

    def incidents(self) -> list[Incident]:
        rows = self.writer.projection_tables.rows("incidents")
        return sorted((Incident.from_json(r[-1]) for r in rows), key=lambda i: i.number or 0)

    def correlation_of(self) -> dict[str, dict[str, Any]]:
        """Each stored alert event's recorded decision, by event id."""
        found: dict[str, dict[str, Any]] = {}
        for row in self.writer.events:
            if row.type.startswith("im.alert."):
                data = orjson.loads(row.body).get("data") or {}
                found[row.event_id] = data.get("correlation") or {}
        return found


def replay(rules: CorrelationRules, alerts: list[Alert]) -> Replay:
    """Correlate ``alerts`` in time order on an in-memory log; nothing is written."""
    ordered = sorted(alerts, key=lambda a: a.time_us)
    from incidents.app import build_replay_appender

    appender, writer = build_replay_appender()
    appender.start()
    try:
        # One command per alert, as deliveries arrive one by one at a server.
        futures = [
            appender.submit_command(IngestAlerts((alert,), rules, REPLAY_INTEGRATION.recorder))
            for alert in ordered
        ]
        outcomes = [o for f in futures for o in f.result()]
    finally:
        appender.stop()
    return Replay(ordered, outcomes, writer)


def report(result: Replay) -> dict[str, Any]:
    """The replay as a JSON document: incidents it would create and every alert's fate."""
    decisions = result.correlation_of()
    rows: list[dict[str, Any]] = []
    for alert, outcome in zip(result.alerts, result.outcomes, strict=True):
        recorded = decisions.get(outcome.event_id, {}) if outcome.outcome == "created" else {}
        rows.append(
            {
                "alert_key": alert.key,
                "event_id": outcome.event_id,
                "time": format_micros(alert.time_us),
                "status": "firing" if alert.event_type == TRIGGER else "resolved",
                "name": alert.name,
                "decision": outcome.decision,
                "incident_id": outcome.incident_id,
                "rule": outcome.rule,
                "fields": recorded.get("fields", {}),
                "reason": recorded.get("reason"),
                "skipped_rules": recorded.get("skipped_rules", []),
            }
        )
    # Unattached: alerts that no incident holds at the end of the replay.
    placed = result.writer.projection_tables.rows("alerts")
    incidents = [
        {
            "incident_id": i.id,
            "title": i.title,
            "severity": i.severity,
            "status": i.status,
            # Every alert that opened or joined it during the replay (an alert series
            # that fires again later may move on to a newer incident).
            "alerts": sorted(
                {
                    r["alert_key"]
                    for r in rows
                    if r["incident_id"] == i.id and r["decision"] in ("opened", "attached")
                }
            ),
            "related": i.related,
        }
        for i in result.incidents()
    ]
    unattached = [a[0] for a in placed if a[1] is None]
    return {
        "alerts": len(rows),
        "incidents": incidents,
        "unattached": unattached,
        "duplicates": sum(1 for r in rows if r["decision"] == "duplicate"),
        "decisions": rows,
    }


def _print_table(doc: dict[str, Any]) -> None:
    console = Console()
    incidents = Table(title="Incidents that would be created")
    for column in ("Incident", "Severity", "Status", "Title", "Alerts", "Related"):
        incidents.add_column(column)
    for i in doc["incidents"]:
        incidents.add_row(
            i["incident_id"],
            i["severity"],
            i["status"],
            i["title"],
            str(len(i["alerts"])),
            ", ".join(i["related"]),
        )
    console.print(incidents)
    decisions = Table(title="Alerts, in time order")
    for column in ("Time", "Alert", "Status", "Decision", "Incident", "Rule", "Fields"):
        decisions.add_column(column)
    for r in doc["decisions"]:
        fields = ", ".join(f"{k}={v}" for k, v in r["fields"].items())
        skipped = ", ".join(
            f"{s['rule']} (no {'/'.join(s['missing'])})" for s in r["skipped_rules"]
        )
        if skipped:
            fields = f"{fields}; skipped {skipped}" if fields else f"skipped {skipped}"
        decisions.add_row(
            r["time"],
            r["name"] or r["alert_key"],
            r["status"],
            r["decision"],
            r["incident_id"] or "",
            r["rule"] or "",
            fields,
        )
    console.print(decisions)
    opened = sum(1 for r in doc["decisions"] if r["decision"] == "opened")
    attached = sum(1 for r in doc["decisions"] if r["decision"] == "attached")
    typer.echo(
        f"{doc['alerts']} alerts: {len(doc['incidents'])} incident(s) ({opened} opened by alerts), "
        f"{attached} attached, {len(doc['unattached'])} unattached, "
        f"{doc['duplicates']} duplicates"
    )


@app.command("test")
def test_command(
    rules: Annotated[Path, typer.Option("--rules", help="YAML file with a correlation: section")],
    alerts: Annotated[
        Path,
        typer.Option(
            "--alerts",
            help="Alertmanager webhook payloads: one, a JSON array of them, or JSON Lines",
        ),
    ],
    output: Annotated[OutputFormat, typer.Option(help="table or json")] = OutputFormat.table,
) -> None:
    """Replay recorded alerts against a rule set and print the incidents it would create.

    Alerts are replayed in the order of their own times (startsAt; endsAt for a
    resolve), so windows behave as they did. Nothing is written: no database is
    opened, the server's correlation runs on an in-memory log.
    """
    rule_set = load_rules(rules)
    recorded = load_alerts(alerts)
    doc = report(replay(rule_set, recorded))
    if output is OutputFormat.json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        _print_table(doc)
