"""``incidents admin``: local administration that works on the database directly."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from incidents.cli import backup, outbox, policy_bundles
from incidents.cli.client import CliError
from incidents.cli.progress import progress_bars
from incidents.config import mask_url_password
from incidents.events.timeformat import format_micros
from incidents.identity.directory import GrantKind, PrincipalType, validate_grant
from incidents.identity.tokens import TokenNotFound, TokenService
from incidents.policy.model import ROLES
from incidents.store.migrate import head_revision

app = typer.Typer(help="Local administration (runs against IM_DATABASE_URL).", no_args_is_help=True)
token_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(outbox.app, name="outbox")
app.add_typer(policy_bundles.app, name="policy-bundle")
app.command("backup")(backup.backup_command)
app.command("backup-list")(backup.backup_list_command)
app.command("restore")(backup.restore_command)


# The composition root is imported by the commands that use it, not at start-up:
# every other command of the CLI is an HTTP client and should start fast.


def _tokens() -> TokenService:
    from incidents.app import build_tokens, load_configuration, open_database

    settings = load_configuration()
    return build_tokens(settings, open_database(settings))


@app.command("migrate")
def migrate_command() -> None:
    """Apply pending schema migrations (also done on every server start)."""
    from incidents.app import load_configuration, open_database

    settings = load_configuration()
    database = open_database(settings)
    database.engine.dispose()
    before, after = database.migrated_from, database.revision
    where = mask_url_password(settings.database_url)
    if before == after:
        typer.echo(f"{where}: already at revision {after}")
    else:
        typer.echo(f"{where}: migrated from {before or 'empty'} to {after}")


@app.command("status")
def status_command() -> None:
    """Show the database's schema revision and the newest one this build knows."""
    from incidents.app import database_revision, load_configuration

    settings = load_configuration()
    current = database_revision(settings)
    typer.echo(f"database: {mask_url_password(settings.database_url)}")
    typer.echo(f"revision: {current or 'empty'} (newest known: {head_revision()})")


@app.command("rebuild-projections")
def rebuild_projections_command() -> None:
    """Rebuild every projection (incidents, alerts, correlation groups) from the log.

    Holds the log's write lock while it runs: servers on the same database keep
    answering reads, and their appends wait until the rebuild commits.
    """
    from incidents.app import build_container, load_configuration

    container = build_container(load_configuration())
    try:
        # Not container.start(): that would build never-built projections first.
        container.appender.start()
        total = container.reader.head_position()
        with progress_bars() as progress:
            task = progress.add_task("folding events", total=total)
            try:
                report = container.incidents.rebuild(
                    progress=lambda done: progress.update(task, completed=done)
                )
            except SQLAlchemyError:
                raise
            except Exception as exc:
                # One transaction: a failed rebuild leaves the old projections in place.
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise CliError(f"rebuild failed, projections unchanged: {reason}") from None
            progress.update(task, completed=report.events)
    finally:
        container.close()
    typer.echo(
        f"rebuilt projections: {report.events} events folded, head position {report.head_position}"
    )


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option("--user", "-u", help="The user's email")],
    name: Annotated[str | None, typer.Option(help="A label, e.g. 'ci' or 'laptop'")] = None,
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role",
            "-r",
            help=f"Grant a role to the user too (repeatable): {', '.join(ROLES)}",
        ),
    ] = None,
) -> None:
    """Create a token for a user and print it once; only its hash is stored.

    The user is added to the directory if new. Without --role an existing user keeps
    their grants and a new one has none (every request is then refused with 403).
    """
    from incidents.app import build_directory, build_tokens, load_configuration, open_database

    # Every role is checked before anything is stored: a typo must not leave a user
    # behind without the grant that was asked for.
    try:
        for value in role or []:
            validate_grant(GrantKind.ROLE, value)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    settings = load_configuration()
    database = open_database(settings)
    if database.created:
        # A token in a database no server reads is a puzzling 401 later: say so now.
        typer.echo(
            f"warning: {mask_url_password(settings.database_url)} had no schema: a new, "
            "empty database was created. Check IM_DATABASE_URL if a server already runs "
            "elsewhere.",
            err=True,
        )
    directory = build_directory(settings, database)
    try:
        account = directory.ensure_user(user)
        for value in role or []:
            directory.grant(PrincipalType.USER, account.user_id, GrantKind.ROLE, value)
        info, secret = build_tokens(settings, database).create(account.email, name)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    typer.echo(secret)
    typer.echo(
        f"token {info.token_id} for {info.subject}: store it now, it is not shown again", err=True
    )


@token_app.command("list")
def token_list(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's")] = None,
) -> None:
    """List tokens (ids, owners, state); secrets are never shown."""
    table = Table()
    for column in ("Token id", "User", "Name", "Created", "State"):
        table.add_column(column)
    for info in _tokens().list(user):
        state = "active" if info.revoked_us is None else f"revoked {format_micros(info.revoked_us)}"
        table.add_row(
            info.token_id, info.subject, info.name or "", format_micros(info.created_us), state
        )
    Console().print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token id (tok_...)")]) -> None:
    """Revoke a token; servers stop accepting it within IM_TOKEN_CACHE_SECONDS."""
    try:
        info = _tokens().revoke(token_id)
    except TokenNotFound as exc:
        raise CliError(str(exc)) from None
    typer.echo(f"revoked {info.token_id} ({info.subject})")
