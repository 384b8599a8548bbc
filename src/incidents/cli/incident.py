"""``incidents incident``: declare, list, show and work incidents through the HTTP API."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from incidents.cli.client import ApiClient, CliError
from incidents.cli.credentials import load_credentials

app = typer.Typer(help="Declare, list, show and work incidents.", no_args_is_help=True)


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


Output = Annotated[OutputFormat, typer.Option("--output", "-o", help="text or json")]


def _client() -> ApiClient:
    return ApiClient(load_credentials())


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def summary_line(incident: dict[str, Any]) -> str:
    """One line per incident: id, status, severity, service and title."""
    service = f" [{incident['service']}]" if incident.get("service") else ""
    return (
        f"{incident['id']}  {incident['status']:<9} {incident['severity']}{service}  "
        f"{incident['title']}"
    )


def _labels(values: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not key or not sep:
            raise CliError(f"--label must be KEY=VALUE, got {value!r}", exit_code=2)
        labels[key] = val
    return labels


def _act(path: str, body: dict[str, Any] | None, output: OutputFormat, done: str) -> None:
    """POST an action; print the incident's new summary (or the JSON answer)."""
    with _client() as client:
        answer = client.request("POST", path, json=body).json()
    if output is OutputFormat.JSON:
        _echo_json(answer)
        return
    typer.echo(f"{done}: {summary_line(answer['incident'])}")


@app.command("declare")
def declare(
    title: Annotated[str, typer.Argument(help="What is happening, in a few words")],
    sev: Annotated[str, typer.Option("--sev", "--severity", help="SEV-1 (worst) ... SEV-4")] = (
        "SEV-3"
    ),
    service: Annotated[str | None, typer.Option(help="The affected service")] = None,
    description: Annotated[str, typer.Option(help="Longer description")] = "",
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE (repeatable)")
    ] = None,
    classification: Annotated[
        str, typer.Option(help="public, restricted or confidential (who may see it)")
    ] = "public",
    commander: Annotated[str | None, typer.Option(help="Incident commander's email")] = None,
    draft: Annotated[bool, typer.Option(help="Declare as a draft, opened later")] = False,
    parent: Annotated[str | None, typer.Option(help="Parent incident id")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Retrying with the same key declares only once")
    ] = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Declare a new incident and print its id."""
    body: dict[str, Any] = {
        "title": title,
        "severity": sev,
        "description": description,
        "labels": _labels(label),
        "classification": classification,
        "status": "draft" if draft else "open",
    }
    for key, value in (("service", service), ("commander", commander), ("parent_id", parent)):
        if value is not None:
            body[key] = value
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with _client() as client:
        response = client.request(
            "POST", "/api/v1/incidents", ok=(200, 201), json=body, headers=headers
        )
    incident = response.json()
    if output is OutputFormat.JSON:
        _echo_json(incident)
        return
    verb = "declared" if response.status_code == 201 else "already declared (same key)"
    typer.echo(f"{incident['id']} {verb}: {summary_line(incident)}")


@app.command("list")
def list_incidents(
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="open, mitigated, ... (repeatable)")
    ] = None,
    severity: Annotated[
        list[str] | None, typer.Option("--sev", "--severity", help="SEV-n (repeatable)")
    ] = None,
    service: Annotated[str | None, typer.Option(help="Only this service")] = None,
    commander: Annotated[
        str | None, typer.Option(help="Only incidents this person commands")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE; all must match")
    ] = None,
    search: Annotated[str | None, typer.Option("--search", "-q", help="Text in the title")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first)", min=1)] = 50,
    output: Output = OutputFormat.TEXT,
) -> None:
    """List incidents, newest first."""
    params: dict[str, Any] = {}
    for key, value in (
        ("status", status),
        ("severity", severity),
        ("service", service),
        ("commander", commander),
        ("label", label),
        ("q", search),
    ):
        if value:
            params[key] = value
    incidents: list[dict[str, Any]] = []
    with _client() as client:
        cursor: str | None = None
        while len(incidents) < limit:
            query = {**params, "limit": min(1000, limit - len(incidents))}
            if cursor:
                query["cursor"] = cursor
            page = client.get_json("/api/v1/incidents", params=query)
            incidents.extend(page["incidents"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
    if output is OutputFormat.JSON:
        _echo_json(incidents)
        return
    if not incidents:
        typer.echo("no incidents match", err=True)
        return
    table = Table(show_lines=False, box=None)
    for column in ("Id", "Status", "Severity", "Service", "Commander", "Declared", "Title"):
        table.add_column(column, overflow="fold")
    for incident in incidents:
        table.add_row(
            incident["id"],
            incident["status"],
            incident["severity"],
            incident.get("service") or "",
            incident.get("commander") or "",
            incident["declared_at"],
            incident["title"],
        )
    Console().print(table)


@app.command("show")
def show(
    incident_id: Annotated[str, typer.Argument(help="Incident id, e.g. INC-12")],
    events: Annotated[int, typer.Option(help="How many recent timeline entries", min=0)] = 10,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Print an incident's summary and its latest timeline entries."""
    with _client() as client:
        incident = client.get_json(f"/api/v1/incidents/{incident_id}")
        entries: list[dict[str, Any]] = []
        if events:
            page = client.get_json(
                f"/api/v1/incidents/{incident_id}/timeline",
                params={"order": "desc", "limit": min(events, 1000)},
            )
            entries = list(reversed(page["events"]))
    if output is OutputFormat.JSON:
        _echo_json({"incident": incident, "latest_events": entries})
        return
    typer.echo(f"{incident['id']}: {incident['title']}")
    roles = ", ".join(f"{role}={user}" for role, user in sorted(incident["roles"].items()))
    rows = [
        ("Status", incident["status"]),
        ("Severity", f"{incident['severity']} (tier {incident['tier']})"),
        ("Service", incident.get("service") or "-"),
        ("Classification", incident["classification"]),
        ("Roles", roles or "-"),
        ("Assignees", ", ".join(incident["assignees"]) or "-"),
        ("Labels", ", ".join(f"{k}={v}" for k, v in incident["labels"].items()) or "-"),
        ("Declared", f"{incident['declared_at']} by {incident['declared_by']}"),
        ("Acknowledged", incident.get("acknowledged_at") or "-"),
        ("Mitigated", incident.get("mitigated_at") or "-"),
        ("Resolved", incident.get("resolved_at") or "-"),
        ("Closed", incident.get("closed_at") or "-"),
        # Canceled is a final state of its own: shown when it happened.
        *([("Canceled", incident["canceled_at"])] if incident.get("canceled_at") else []),
        ("Alerts", f"{incident['alerts']['firing']} firing of {incident['alerts']['total']}"),
        ("Next moves", ", ".join(incident["allowed_transitions"]) or "none (final)"),
    ]
    if incident.get("merged_into"):
        rows.append(("Merged into", incident["merged_into"]))
    if incident.get("description"):
        rows.insert(0, ("Description", incident["description"]))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        typer.echo(f"  {name:<{width}}  {value}")
    if entries:
        typer.echo("")
        typer.echo(f"Latest {len(entries)} timeline entries:")
        for entry in entries:
            typer.echo(
                f"  {entry['event_time']}  {entry['event_type']:<26} {entry['actor']}  "
                f"{entry['title']}"
            )


@app.command("status")
def status(
    incident_id: Annotated[str, typer.Argument(help="Incident id")],
    state: Annotated[str, typer.Argument(help="open, mitigated, resolved, closed or canceled")],
    reason: Annotated[str | None, typer.Option(help="Why (recorded on the timeline)")] = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Move an incident to another status (closing needs the commander role)."""
    body: dict[str, Any] = {"status": state}
    if reason:
        body["reason"] = reason
    _act(f"/api/v1/incidents/{incident_id}/status", body, output, "moved")


@app.command("ack")
def ack(
    incident_id: Annotated[str, typer.Argument(help="Incident id")],
    note: Annotated[str | None, typer.Option(help="A note recorded with it")] = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Acknowledge an incident (the status does not change)."""
    body = {"note": note} if note else {}
    _act(f"/api/v1/incidents/{incident_id}/acknowledge", body, output, "acknowledged")


@app.command("escalate")
def escalate(
    incident_id: Annotated[str, typer.Argument(help="Incident id")],
    sev: Annotated[str | None, typer.Option("--sev", "--severity", help="New severity")] = None,
    tier: Annotated[int | None, typer.Option(help="New escalation tier", min=1)] = None,
    reason: Annotated[str | None, typer.Option(help="Why")] = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Escalate: raise severity or tier (by default one severity step, or a tier at SEV-1)."""
    body: dict[str, Any] = {}
    for key, value in (("severity", sev), ("tier", tier), ("reason", reason)):
        if value is not None:
            body[key] = value
    _act(f"/api/v1/incidents/{incident_id}/escalate", body, output, "escalated")


@app.command("assign")
def assign(
    incident_id: Annotated[str, typer.Argument(help="Incident id")],
    user: Annotated[str | None, typer.Option(help="The user's email")] = None,
    role: Annotated[
        str | None,
        typer.Option(help="Give this role (commander, scribe, ...); without it, assign the user"),
    ] = None,
    remove: Annotated[
        bool, typer.Option("--remove", help="Remove the user from the assignees, or clear the role")
    ] = False,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Give a role to a user (--role), or add or remove an assignee."""
    if role is not None:
        if remove:
            body: dict[str, Any] = {"role": role}
        elif user is None:
            raise CliError("--role needs --user EMAIL (or --remove to clear it)", exit_code=2)
        else:
            body = {"role": role, "user": user}
        _act(f"/api/v1/incidents/{incident_id}/roles", body, output, "roles changed")
        return
    if user is None:
        raise CliError("name a --user (and --role to give a role)", exit_code=2)
    body = {"remove": [user]} if remove else {"add": [user]}
    _act(f"/api/v1/incidents/{incident_id}/assign", body, output, "assignees changed")


@app.command("note")
def note(
    incident_id: Annotated[str, typer.Argument(help="Incident id")],
    text: Annotated[str, typer.Argument(help="The note")],
    visibility: Annotated[
        str | None, typer.Option(help="public, restricted or confidential (default: incident's)")
    ] = None,
) -> None:
    """Add a note to an incident's timeline."""
    body: dict[str, Any] = {"text": text}
    if visibility:
        body["visibility"] = visibility
    with _client() as client:
        answer = client.request(
            "POST", f"/api/v1/incidents/{incident_id}/notes", ok=(201,), json=body
        ).json()
    typer.echo(f"note {answer['event_id']} added to {answer['incident_id']}")


@app.command("merge")
def merge(
    incident_id: Annotated[str, typer.Argument(help="The duplicate incident")],
    into: Annotated[str, typer.Option(help="The incident to keep")],
    reason: Annotated[str | None, typer.Option(help="Why")] = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Merge a duplicate into another incident (the duplicate is canceled, alerts move)."""
    body: dict[str, Any] = {"into": into}
    if reason:
        body["reason"] = reason
    _act(f"/api/v1/incidents/{incident_id}/merge", body, output, f"merged into {into}")


@app.command("link")
def link(
    incident_id: Annotated[str, typer.Argument(help="Incident id")],
    parent: Annotated[str | None, typer.Option(help="Make it a child of this incident")] = None,
    related: Annotated[
        list[str] | None, typer.Option("--related", "-r", help="A related incident (repeatable)")
    ] = None,
    output: Output = OutputFormat.TEXT,
) -> None:
    """Link an incident to a parent or to related incidents."""
    body: dict[str, Any] = {"related": related or []}
    if parent:
        body["parent_id"] = parent
    _act(f"/api/v1/incidents/{incident_id}/link", body, output, "linked")


@app.command("related")
def related(
    incident_id: Annotated[str, typer.Argument(help="Incident id")],
    output: Output = OutputFormat.TEXT,
) -> None:
    """Show an incident's family: parent, children, related and merged incidents."""
    with _client() as client:
        family = client.get_json(f"/api/v1/incidents/{incident_id}/related")
    if output is OutputFormat.JSON:
        _echo_json(family)
        return
    groups = [
        ("Parent", [family["parent"]] if family["parent"] else []),
        ("Children", family["children"]),
        ("Related", family["related"]),
        ("Merged into", [family["merged_into"]] if family["merged_into"] else []),
        ("Merged from", family["merged_from"]),
    ]
    shown = False
    for name, items in groups:
        if items:
            shown = True
            typer.echo(f"{name}:")
            for item in items:
                typer.echo(f"  {summary_line(item)}")
    if not shown:
        typer.echo(f"{incident_id} has no related incidents")
