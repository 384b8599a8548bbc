"""``incidents sync``: connector status, drift reconciliation and the conflict queue.

``status`` and ``reconcile`` work locally (on the database and the vendors, with the
server's IM_CONFIG); ``conflicts`` goes through the HTTP API, as the signed-in user.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from incidents.cli.client import ApiClient, CliError
from incidents.cli.credentials import load_credentials

if TYPE_CHECKING:
    from incidents.app import Container

app = typer.Typer(
    help="ITSM sync: connector status, reconcile, the conflict queue.", no_args_is_help=True
)
conflicts_app = typer.Typer(help="The conflict queue.", no_args_is_help=True)
app.add_typer(conflicts_app, name="conflicts")


def _open() -> Container:
    from incidents.app import open_sync_tools

    container = open_sync_tools()
    if container.sync is None:
        container.close()
        raise CliError("no connectors are configured (connectors: in the IM_CONFIG file)")
    return container


def _chosen(container: Container, connector: str | None) -> list[str]:
    assert container.sync is not None
    ids = list(container.sync.connectors)
    if connector is None:
        return ids
    if connector not in ids:
        raise CliError(f"--connector: no connector {connector!r}; configured: {', '.join(ids)}")
    return [connector]


@app.command("status")
def sync_status(
    output_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Per connector: links, last poll, lag, pending outbox rows, dead letters, conflicts."""
    from incidents.api.sync import status_document
    from incidents.events.timeformat import now_micros

    container = _open()
    try:
        assert container.sync is not None
        rows = {
            cid: status_document(container.sync.store.status(cid), now_micros())
            for cid in container.sync.connectors
        }
    finally:
        container.close()
    if output_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    for column in (
        "Connector",
        "Links",
        "Last poll",
        "Lag (s)",
        "Pending",
        "Dead",
        "Conflicts",
        "Last error",
    ):
        table.add_column(column)
    for cid, doc in rows.items():
        lag = doc["seconds_since_last_change"]
        table.add_row(
            cid,
            str(doc["links"]),
            doc["last_poll"] or "never",
            "" if lag is None else f"{lag:.1f}",
            str(doc["outbox_pending"]),
            str(doc["outbox_dead"]),
            str(doc["open_conflicts"]),
            doc["last_error"] or "",
        )
    Console().print(table)


@app.command("reconcile")
def sync_reconcile(
    connector: Annotated[
        str | None, typer.Option("--connector", help="Only this connector (vendor:name)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report drift, repair nothing")
    ] = False,
) -> None:
    """Compare every linked ticket with its incident field by field; repair what field
    ownership allows (pulls now, pushes through the outbox) and queue the rest."""
    from incidents.sync.engine import Drift

    container = _open()
    drift: list[Drift] = []
    try:
        assert container.sync is not None
        for cid in _chosen(container, connector):
            try:
                drift.extend(container.sync.reconcile(cid, dry_run=dry_run))
            except Exception as exc:
                raise CliError(f"{cid}: reconcile failed: {exc}") from None
    finally:
        container.close()
    table = Table(title="Drift" + (" (dry run: nothing repaired)" if dry_run else ""))
    for column in (
        "Connector",
        "Incident",
        "Ticket",
        "Field",
        "Incident value",
        "Ticket value",
        "Action",
    ):
        table.add_column(column, overflow="fold")
    for d in drift:
        table.add_row(
            d.connector, d.incident_id, d.key, d.field, d.ours or "", d.theirs or "", d.action
        )
    console = Console()
    if drift:
        console.print(table)
    console.print(f"{len(drift)} field(s) drifted")


def _conflict_line(c: dict[str, Any]) -> list[str]:
    return [
        c["id"],
        c["connector"],
        c["incident_id"],
        c["field"],
        c["ours"] or "",
        c["theirs"] or "",
        c["reason"],
        c["resolution"] or "open",
    ]


@conflicts_app.command("list")
def conflicts_list(
    all_: Annotated[bool, typer.Option("--all", help="Resolved conflicts too")] = False,
    connector: Annotated[str | None, typer.Option("--connector", help="vendor:name")] = None,
    output_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List the conflicts waiting for a decision."""
    params: dict[str, str] = {"state": "all" if all_ else "open"}
    if connector:
        params["connector"] = connector
    with ApiClient(load_credentials()) as client:
        found = client.get_json("/api/v1/sync/conflicts", params=params)["conflicts"]
    if output_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table()
    for column in ("Id", "Connector", "Incident", "Field", "Ours", "Theirs", "Reason", "State"):
        table.add_column(column, overflow="fold")
    for c in found:
        table.add_row(*_conflict_line(c))
    Console().print(table)


@conflicts_app.command("resolve")
def conflicts_resolve(
    conflict_id: Annotated[str, typer.Argument(help="The conflict id")],
    ours: Annotated[bool, typer.Option("--ours", help="Keep the incident's value")] = False,
    theirs: Annotated[bool, typer.Option("--theirs", help="Take the ticket's value")] = False,
    value: Annotated[str | None, typer.Option("--value", help="Set this value on both")] = None,
) -> None:
    """Resolve a conflict with exactly one of --ours, --theirs or --value."""
    chosen = [
        name
        for name, on in (("ours", ours), ("theirs", theirs), ("value", value is not None))
        if on
    ]
    if len(chosen) != 1:
        raise CliError("give exactly one of --ours, --theirs or --value")
    body: dict[str, Any] = {"resolution": chosen[0]}
    if value is not None:
        body["value"] = value
    with ApiClient(load_credentials()) as client:
        answer = client.request(
            "POST", f"/api/v1/sync/conflicts/{conflict_id}/resolve", json=body
        ).json()
    typer.echo(
        f"conflict {answer['id']} resolved: {answer['resolution']} "
        f"({answer['field']} = {answer['resolved_value']!r})"
    )
