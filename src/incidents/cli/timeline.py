"""``incidents timeline``: list, get, export, append and verify timeline events."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from incidents.cli.client import ApiClient, CliError
from incidents.cli.credentials import load_credentials
from incidents.cli.progress import progress_bars

app = typer.Typer(help="Read, append, export and verify incident timelines.", no_args_is_help=True)

# Chain verification found tampering: distinct from usage (2) and other errors (1).
EXIT_CHAIN_BROKEN = 3


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


class ExportFormat(StrEnum):
    JSON = "json"
    MD = "md"


def _client() -> ApiClient:
    return ApiClient(load_credentials())


def _print_json(value: Any, pretty: bool) -> None:
    text = json.dumps(value, indent=2 if pretty else None, ensure_ascii=False)
    typer.echo(text)


@app.command("list")
def list_events(
    incident: Annotated[str, typer.Option("--incident", "-i", help="Incident id, e.g. INC-1234")],
    type_: Annotated[
        list[str] | None,
        typer.Option("--type", "-t", help="Event type glob, e.g. 'im.incident.*' (repeatable)"),
    ] = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="Only events at or after this RFC 3339 time")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Only events at or before this RFC 3339 time")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Only events by this actor")] = None,
    correlation_key: Annotated[str | None, typer.Option(help="Only this correlation key")] = None,
    fingerprint: Annotated[str | None, typer.Option(help="Only this fingerprint")] = None,
    order: Annotated[str, typer.Option(help="asc (oldest first) or desc")] = "asc",
    limit: Annotated[
        int | None, typer.Option(help="Stop after this many events (default: all)", min=1)
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table or json")
    ] = OutputFormat.TABLE,
    pretty: Annotated[bool, typer.Option(help="Indent JSON output")] = False,
) -> None:
    """List an incident's timeline events, following pages until the end."""
    params: dict[str, Any] = {"order": order}
    if type_:
        params["type"] = type_
    for key, value in (
        ("from", from_),
        ("to", to),
        ("actor", actor),
        ("correlation_key", correlation_key),
        ("fingerprint", fingerprint),
    ):
        if value is not None:
            params[key] = value
    events: list[dict[str, Any]] = []
    with _client() as client:
        cursor: str | None = None
        while True:
            page_size = min(1000, limit - len(events)) if limit else 1000
            query = {**params, "limit": page_size}
            if cursor:
                query["cursor"] = cursor
            page = client.get_json(f"/api/v1/incidents/{incident}/timeline", params=query)
            events.extend(page["events"])
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and len(events) >= limit):
                break
    if output is OutputFormat.JSON:
        _print_json(events, pretty)
        return
    table = Table(title=f"Timeline {incident}", show_lines=False)
    for column in ("Time", "Type", "Actor", "Title", "Event id"):
        table.add_column(column, overflow="fold")
    for event in events:
        table.add_row(
            event["event_time"], event["event_type"], event["actor"], event["title"], event["id"]
        )
    Console().print(table)
    if not events:
        typer.echo("no events match", err=True)


@app.command("get")
def get_event(
    event_id: Annotated[str, typer.Argument(help="The CloudEvent id")],
    source: Annotated[
        str | None, typer.Option(help="The event's source, when several sources use the id")
    ] = None,
    dialect: Annotated[str, typer.Option(help="spec (imactor) or dotted (im.actor)")] = "spec",
    pretty: Annotated[bool, typer.Option(help="Indent the JSON")] = True,
) -> None:
    """Print one stored event as a CloudEvent."""
    params = {"dialect": dialect}
    if source:
        params["source"] = source
    with _client() as client:
        event = client.get_json(f"/api/v1/timeline/events/{event_id}", params=params)
    _print_json(event, pretty)


def _count_units(chunk: bytes, fmt: ExportFormat) -> int:
    if fmt is ExportFormat.JSON:
        return chunk.count(b"\n{")
    return chunk.count(b"\n### ")


@app.command("export")
def export(
    incident: Annotated[str, typer.Option("--incident", "-i", help="Incident id")],
    format: Annotated[ExportFormat, typer.Option("--format", "-f", help="json or md")] = (
        ExportFormat.JSON
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout)")
    ] = None,
    dialect: Annotated[
        str | None, typer.Option(help="JSON attribute names: spec (default) or dotted")
    ] = None,
    store: Annotated[
        bool,
        typer.Option(
            "--store",
            help="Keep the export on the server as an artifact of the incident (prints its "
            "digest) instead of downloading it",
        ),
    ] = False,
) -> None:
    """Export a timeline as CloudEvents JSON or a Markdown report.

    A file is written whole or not at all: the export goes to a temporary file
    that replaces the target only once complete. With --store the server keeps the
    export as an artifact of the incident; it holds what you may read, and only
    readers who may read as much can download it.
    """
    params = {"format": format.value}
    if dialect:
        params["dialect"] = dialect
    if store:
        if output is not None:
            raise CliError("--store keeps the export on the server; leave out --output")
        with _client() as client:
            stored = client.request(
                "POST",
                f"/api/v1/incidents/{incident}/timeline/export/artifacts",
                params=params,
                ok=(201,),
            ).json()
        typer.echo(
            f"stored {stored['filename']} ({stored['size']} bytes) as artifact "
            f"{stored['sha256']} of {incident}"
        )
        return
    with (
        _client() as client,
        client.stream(f"/api/v1/incidents/{incident}/timeline/export", params=params) as resp,
    ):
        total = int(resp.headers.get("x-event-count", "0"))
        if output is None:
            sink = sys.stdout.buffer
            for chunk in resp.iter_bytes():
                sink.write(chunk)
            sink.flush()
            return
        directory = output.resolve().parent
        if not directory.is_dir():
            raise CliError(f"cannot write {output}: {directory} is not a directory")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", dir=directory)
        try:
            with (
                os.fdopen(fd, "wb") as sink,
                progress_bars() as progress,
            ):
                task = progress.add_task(f"exporting {incident}", total=total)
                for chunk in resp.iter_bytes():
                    sink.write(chunk)
                    progress.advance(task, _count_units(chunk, format))
                progress.update(task, completed=total)
            os.replace(tmp_name, output)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    typer.echo(f"exported {total} events to {output}", err=True)


@app.command("append")
def append(
    file: Annotated[
        str, typer.Argument(help="A JSON file with one event or an array of events; - for stdin")
    ] = "-",
) -> None:
    """Append a CloudEvent (or a batch: a JSON array) from a file or stdin."""
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror}") from None
    try:
        document = json.loads(raw)
    except UnicodeDecodeError:
        raise CliError(f"{file} is not UTF-8 text; CloudEvents JSON must be UTF-8") from None
    except json.JSONDecodeError as exc:
        raise CliError(f"{file} is not valid JSON: {exc}") from None
    batch = isinstance(document, list)
    content_type = "application/cloudevents-batch+json" if batch else "application/cloudevents+json"
    with _client() as client:
        resp = client.request(
            "POST",
            "/api/v1/timeline/events",
            ok=(200, 201),
            content=raw,
            headers={"Content-Type": content_type},
        )
    body = resp.json()
    if not batch:
        state = "created" if body.get("created") else "duplicate (already stored)"
        typer.echo(f"{body['event_id']}: {state}, incident {body.get('incident_id')}")
        return
    for index, result in enumerate(body["results"]):
        label = result.get("event_id", f"#{index}")
        status = result.get("status")
        if status == 201:
            typer.echo(f"{label}: created")
        elif status == 200:
            typer.echo(f"{label}: duplicate (already stored)")
        else:
            typer.echo(f"{label}: rejected: {result.get('detail')}", err=True)
    typer.echo(
        f"{body['created']} created, {body['duplicates']} duplicates, "
        f"{body['conflicts']} conflicts, {body['rejected']} rejected",
        err=True,
    )
    if body["conflicts"] or body["rejected"]:
        raise typer.Exit(1)


@app.command("verify")
def verify(
    incident: Annotated[str, typer.Option("--incident", "-i", help="Incident id")],
) -> None:
    """Check an incident's hash chain; exits 3 if it is broken."""
    with _client() as client:
        report = client.get_json(f"/api/v1/incidents/{incident}/timeline/verify")
    if report["intact"]:
        typer.echo(f"{incident}: chain intact, {report['events']} events")
        return
    where = report.get("first_broken_position")
    at = f" at position {where}" if where is not None else ""
    typer.echo(f"{incident}: chain BROKEN{at}: {report.get('reason')}", err=True)
    raise typer.Exit(EXIT_CHAIN_BROKEN)
