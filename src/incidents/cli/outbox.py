"""``incidents admin outbox``: inspect, retry and discard outbox rows (local, on the database)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from incidents.cli.client import CliError
from incidents.events.timeformat import format_micros, now_micros
from incidents.store.outbox_store import OutboxRowNotFound, OutboxStateError, OutboxStore

app = typer.Typer(
    help="The transactional outbox: undelivered rows, dead letters, retries.",
    no_args_is_help=True,
)


def _store() -> OutboxStore:
    from incidents.app import build_outbox_store, load_configuration, open_database

    settings = load_configuration()
    return build_outbox_store(settings, open_database(settings))


@app.command("list")
def outbox_list(
    failed: Annotated[
        bool, typer.Option("--failed", help="Only rows whose delivery failed (retrying or dead)")
    ] = False,
    limit: Annotated[int, typer.Option(help="At most this many rows", min=1)] = 50,
) -> None:
    """List undelivered rows, oldest first (delivered rows are not shown)."""
    table = Table()
    for column in ("Id", "Position", "Incident", "Type", "Destination", "State", "Attempts"):
        table.add_column(column)
    table.add_column("Next attempt / dead since")
    table.add_column("Last error", overflow="fold")
    for item in _store().list(failed=failed, limit=limit):
        when = item.dead_us if item.dead_us is not None else item.next_attempt_us
        table.add_row(
            str(item.id),
            str(item.position),
            item.aggregate_id or "",
            item.event_type,
            item.destination,
            item.state,
            str(item.attempts),
            format_micros(when),
            item.last_error or "",
        )
    Console().print(table)


@app.command("retry")
def outbox_retry(row_id: Annotated[int, typer.Argument(help="The outbox row id")]) -> None:
    """Put a dead or failing row back to pending, due now, with a fresh attempt budget."""
    try:
        item = _store().retry(row_id, now_micros())
    except (OutboxRowNotFound, OutboxStateError) as exc:
        raise CliError(str(exc)) from None
    typer.echo(f"outbox row {item.id} ({item.event_type} -> {item.destination}) is pending again")


@app.command("discard")
def outbox_discard(row_id: Annotated[int, typer.Argument(help="The outbox row id")]) -> None:
    """Delete a row so that it is never delivered (the event itself stays in the log)."""
    try:
        item = _store().discard(row_id)
    except OutboxRowNotFound as exc:
        raise CliError(str(exc)) from None
    typer.echo(f"discarded outbox row {item.id} ({item.event_type} -> {item.destination})")
