"""``incidents admin policy-bundle``: store Rego policy bundles for servers to load."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from incidents.cli.client import CliError
from incidents.events.timeformat import format_micros

app = typer.Typer(
    help="Store and list Rego policy bundles (loaded with IM_POLICY_BUNDLE).",
    no_args_is_help=True,
)


@app.command("store")
def store(
    bundle: Annotated[Path, typer.Argument(help="A gzip'd tar of .rego files (an OPA bundle)")],
) -> None:
    """Check a policy bundle and store it in the artifacts' directory or bucket.

    The policies must load and give a decision; the digest printed is what
    IM_POLICY_BUNDLE names to make servers load them (on their next start).
    """
    from incidents.app import build_policy_bundles, load_configuration
    from incidents.policy.bundle import BundleError

    try:
        data = bundle.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {bundle}: {exc.strerror or exc}") from None
    try:
        stored = build_policy_bundles(load_configuration()).put(data)
    except BundleError as exc:
        raise CliError(f"{bundle}: {exc}") from None
    typer.echo(f"stored policy bundle {stored.key} ({stored.size} bytes); load it with")
    typer.echo(f"IM_POLICY_BUNDLE={stored.key}")


@app.command("list")
def listing() -> None:
    """List the stored policy bundles: digest, size, when stored."""
    from incidents.app import build_policy_bundles, load_configuration

    settings = load_configuration()
    stored = build_policy_bundles(settings).listing()
    if not stored:
        typer.echo("no stored policy bundles", err=True)
        return
    table = Table(title="Policy bundles")
    for column in ("SHA-256", "Bytes", "Stored", "Loaded"):
        table.add_column(column, overflow="fold")
    for item in stored:
        loaded = "yes" if item.key == settings.policy_bundle else ""
        table.add_row(item.key, str(item.size), format_micros(item.modified_us), loaded)
    Console(width=200).print(table)
