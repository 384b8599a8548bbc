"""``incidents retention``: legal holds (through the HTTP API) and retention runs (local)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from incidents.app import build_container, load_configuration
from incidents.cli.client import ApiClient, CliError
from incidents.cli.credentials import load_credentials
from incidents.retention.service import RunReport

app = typer.Typer(help="Legal holds and retention runs (archive, purge).", no_args_is_help=True)
hold_app = typer.Typer(help="Place, release and list legal holds.", no_args_is_help=True)
app.add_typer(hold_app, name="hold")

Reason = Annotated[str, typer.Option("--reason", "-r", help="Why (recorded on the timeline)")]


def _hold_path(incident_id: str) -> str:
    return f"/api/v1/incidents/{quote(incident_id, safe='')}/legal-hold"


@hold_app.command("add")
def hold_add(
    incident_id: Annotated[str, typer.Argument(help="The incident to hold")],
    reason: Reason,
) -> None:
    """Put an incident on legal hold: it is never archived or purged while held."""
    with ApiClient(load_credentials()) as client:
        hold = client.request(
            "POST", _hold_path(incident_id), ok=(201,), json={"reason": reason}
        ).json()
    typer.echo(f"{hold['incident_id']} is on legal hold: {hold['reason']}")


@hold_app.command("remove")
def hold_remove(
    incident_id: Annotated[str, typer.Argument(help="The incident to release")],
    reason: Reason,
) -> None:
    """Release an incident's legal hold; retention applies to it again."""
    with ApiClient(load_credentials()) as client:
        client.request("DELETE", _hold_path(incident_id), params={"reason": reason})
    typer.echo(f"{incident_id} is no longer on legal hold")


@hold_app.command("list")
def hold_list() -> None:
    """List the incidents on legal hold."""
    with ApiClient(load_credentials()) as client:
        holds = client.get_json("/api/v1/retention/holds")["holds"]
    table = Table(title="Legal holds")
    for column in ("Incident", "Reason", "Placed by", "Placed at"):
        table.add_column(column)
    for hold in holds:
        table.add_row(hold["incident_id"], hold["reason"], hold["placed_by"], hold["placed_at"])
    Console().print(table)


def _report_table(report: RunReport, show_all: bool) -> Table:
    title = "Retention dry run: nothing changed" if report.dry_run else "Retention run"
    table = Table(title=title)
    for column in ("Incident", "Tier", "Action", "Rule", "Why"):
        table.add_column(column)
    for verdict in report.verdicts:
        if not show_all and verdict.action.value == "keep" and verdict.rule != "legal-hold":
            continue
        action = verdict.action.value
        if not report.dry_run and verdict.incident_id in report.skipped:
            action = f"{action} (skipped: changed meanwhile)"
        table.add_row(verdict.incident_id, verdict.tier.value, action, verdict.rule, verdict.reason)
    plan = report.unattached
    if plan is not None and (plan.events or show_all):
        action = "purge" if plan.events else "keep"
        table.add_row(
            "(no incident)", "purged" if plan.events else "recent", action, plan.rule, plan.reason
        )
    return table


@app.command("run")
def run_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would be archived or purged")
    ] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="List every incident, not only those acted on or held")
    ] = False,
) -> None:
    """Archive and purge what is past its retention period (runs against IM_DATABASE_URL).

    Held incidents are left alone. Each purge leaves a signed tombstone, so verify
    still proves nothing else was touched.
    """
    container = build_container(load_configuration())
    try:
        if container.retention is None:
            raise CliError("retention is not configured")
        report = container.retention.run(dry_run=dry_run)
    finally:
        container.close()
    Console().print(_report_table(report, show_all))
    if dry_run:
        archive = sum(1 for v in report.due if v.action.value == "archive")
        purge = sum(1 for v in report.due if v.action.value == "purge")
        unattached = report.unattached.events if report.unattached else 0
        typer.echo(
            f"would archive {archive} and purge {purge} incidents, and purge {unattached} "
            "events of no incident"
        )
    else:
        moved = sum(report.archived.values())
        removed = sum(s.event_count for s in report.purged)
        loose = sum(s.event_count for s in report.unattached_purged)
        typer.echo(
            f"archived {len(report.archived)} incidents ({moved} events), purged "
            f"{len(report.purged)} ({removed} events, one signed tombstone each), purged "
            f"{loose} events of no incident ({len(report.unattached_purged)} tombstones)"
        )
    for incident_id, reason in report.failed.items():
        typer.echo(f"error: {incident_id} left as it was: {reason}", err=True)
    if report.failed:
        raise typer.Exit(1)
