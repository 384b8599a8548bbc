"""``incidents admin backup``, ``backup-list`` and ``restore``."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import TaskID
from rich.table import Table

from incidents.backup.archive import ArchiveError
from incidents.backup.chains import BrokenChain
from incidents.backup.database import ProgressCallback
from incidents.backup.dump import backup_database
from incidents.backup.restore import TargetNotEmpty, restore_database
from incidents.backup.stored import StoredBackupError
from incidents.cli.client import CliError
from incidents.cli.progress import progress_bars
from incidents.config import mask_url_password
from incidents.events.timeformat import format_micros

# As `incidents timeline verify`: a broken hash chain is exit status 3.
EXIT_BROKEN_CHAIN = 3


@contextmanager
def _progress(verb: str) -> Iterator[ProgressCallback]:
    """Rich progress bars on stderr, one per table (none when stderr is not a terminal)."""
    tasks: dict[str, TaskID] = {}
    with progress_bars() as progress:

        def report(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = progress.add_task(f"{verb} {table}", total=total)
            progress.update(tasks[table], completed=done)

        yield report


def _size(path: Path) -> str:
    return _bytes(path.stat().st_size)


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop returns


def backup_command(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The archive to write (e.g. incidents.tar)"),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the file if it exists")
    ] = False,
    to_artifacts: Annotated[
        bool,
        typer.Option(
            "--to-artifacts",
            help="Store the archive in the artifacts' directory or bucket (under backups/), "
            "named by its SHA-256, instead of writing a file",
        ),
    ] = False,
) -> None:
    """Write the whole database to a portable archive (IM_DATABASE_URL).

    Events, chain heads, the directory, token hashes, instance secrets, projections
    and the outbox, read from one consistent snapshot: servers keep serving while it
    runs. The archive (a tar of gzip'd JSON lines with a manifest of counts and
    checksums) restores into SQLite or PostgreSQL. It is created readable by its
    owner only; keep it as safe as the database. With --to-artifacts it goes to the
    object store instead (see incidents admin backup-list and restore --from-artifacts).
    """
    if to_artifacts == (output is not None):
        raise CliError("give either --output FILE or --to-artifacts")
    if output is not None:
        if output.exists() and not overwrite:
            raise CliError(f"{output} already exists; choose another name or pass --overwrite")
        if not output.parent.is_dir():
            raise CliError(f"{output.parent} is not a directory")
        database, summary = _backup_to(output)
        typer.echo(f"backed up {database} to {output} ({_size(output)}): {summary}")
        return
    from incidents.app import build_stored_backups, load_configuration

    shelf = build_stored_backups(load_configuration())
    with tempfile.TemporaryDirectory(prefix="incidents-backup-") as scratch:
        archive = Path(scratch) / "backup.tar"
        database, summary = _backup_to(archive)
        try:
            stored = shelf.put(archive)
        except StoredBackupError as exc:
            raise CliError(str(exc)) from None
    typer.echo(f"stored the backup as {stored.key} ({_bytes(stored.size)}): {database}, {summary}")


def _backup_to(output: Path) -> tuple[str, str]:
    """Dump the database to ``output``; which database, and what was backed up."""
    from incidents.app import load_configuration, open_database

    settings = load_configuration()
    # As it is: a backup records the schema revision it finds, and migrates nothing.
    engine = open_database(settings, apply_migrations=False).engine
    try:
        with _progress("dumping") as report:
            manifest = backup_database(engine, output, progress=report)
    except ArchiveError as exc:
        raise CliError(str(exc)) from None
    finally:
        engine.dispose()
    events = next((t.rows for t in manifest.tables if t.name == "timeline_events"), 0)
    return mask_url_password(settings.database_url), (
        f"{events} events in {manifest.chains} chains, {len(manifest.tables)} tables, "
        f"schema revision {manifest.schema_revision}"
    )


def backup_list_command() -> None:
    """List the backups stored with --to-artifacts: digest, size, when stored."""
    from incidents.app import build_stored_backups, load_configuration

    stored = build_stored_backups(load_configuration()).listing()
    if not stored:
        typer.echo("no stored backups", err=True)
        return
    table = Table(title="Stored backups")
    for column in ("SHA-256", "Size", "Stored"):
        table.add_column(column, overflow="fold")
    for item in stored:
        table.add_row(item.key, _bytes(item.size), format_micros(item.modified_us))
    Console(width=200).print(table)


def restore_command(
    archive: Annotated[
        Path | None, typer.Argument(help="An archive written by incidents admin backup")
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace a database that already holds data"),
    ] = False,
    from_artifacts: Annotated[
        str | None,
        typer.Option(
            "--from-artifacts",
            metavar="SHA256",
            help="Restore the backup stored under this digest (see backup-list)",
        ),
    ] = None,
) -> None:
    """Load an archive into the database (IM_DATABASE_URL), all or nothing.

    Refuses a database that already holds events, tokens or users unless --force,
    which replaces everything the platform stores there. The archive's checksums and
    hash chains are checked before anything is committed, and every chain is
    verified again once restored; a tampered archive changes nothing. Stop the
    servers using the database first. Exit status 3: a hash chain is broken.
    """
    if (archive is None) == (from_artifacts is None):
        raise CliError("give either an ARCHIVE file or --from-artifacts SHA256")
    if archive is not None:
        _restore_from(archive, force)
        return
    from incidents.app import build_stored_backups, load_configuration

    shelf = build_stored_backups(load_configuration())
    with tempfile.TemporaryDirectory(prefix="incidents-restore-") as scratch:
        fetched = Path(scratch) / f"{from_artifacts}.tar"
        try:
            shelf.fetch(str(from_artifacts), fetched)
        except StoredBackupError as exc:
            raise CliError(str(exc)) from None
        _restore_from(fetched, force, f"stored backup {from_artifacts}")


def _restore_from(archive: Path, force: bool, shown: str | None = None) -> None:
    """Restore ``archive``, naming it ``shown`` (a stored backup's digest) in messages."""
    from incidents.app import load_configuration, open_database

    name = shown or str(archive)

    settings = load_configuration()
    # The restore builds the schema at the archive's revision itself.
    engine = open_database(settings, apply_migrations=False).engine
    where = mask_url_password(settings.database_url)
    try:
        with _progress("loading") as report:
            result = restore_database(engine, archive, force=force, progress=report)
    except BrokenChain as exc:
        raise CliError(f"{name}: {exc}; nothing was restored", EXIT_BROKEN_CHAIN) from None
    except ArchiveError as exc:
        raise CliError(f"{name}: {exc}; nothing was restored") from None
    except TargetNotEmpty as exc:
        raise CliError(f"{where}: {exc}") from None
    finally:
        engine.dispose()
    chains = result.chains
    if chains.broken is not None:
        raise CliError(
            f"restored {name} into {where}, but the hash chain of {chains.broken}",
            EXIT_BROKEN_CHAIN,
        )
    typer.echo(
        f"restored {name} into {where}: {chains.events} events in {chains.chains} chains, "
        f"schema revision {result.manifest.schema_revision} -> {result.revision}; "
        "every hash chain verified"
    )
