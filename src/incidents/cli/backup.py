"""``incidents admin backup`` and ``incidents admin restore``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TaskID

from incidents.backup.archive import ArchiveError
from incidents.backup.chains import BrokenChain
from incidents.backup.database import ProgressCallback
from incidents.backup.dump import backup_database
from incidents.backup.restore import TargetNotEmpty, restore_database
from incidents.cli.client import CliError
from incidents.cli.progress import progress_bars
from incidents.config import mask_url_password

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
    size = float(path.stat().st_size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop returns


def backup_command(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The archive to write (e.g. incidents.tar)")
    ],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the file if it exists")
    ] = False,
) -> None:
    """Write the whole database to a portable archive (IM_DATABASE_URL).

    Events, chain heads, the directory, token hashes, instance secrets, projections
    and the outbox, read from one consistent snapshot: servers keep serving while it
    runs. The archive (a tar of gzip'd JSON lines with a manifest of counts and
    checksums) restores into SQLite or PostgreSQL. It is created readable by its
    owner only; keep it as safe as the database.
    """
    if output.exists() and not overwrite:
        raise CliError(f"{output} already exists; choose another name or pass --overwrite")
    if not output.parent.is_dir():
        raise CliError(f"{output.parent} is not a directory")
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
    typer.echo(
        f"backed up {mask_url_password(settings.database_url)} to {output} ({_size(output)}): "
        f"{events} events in {manifest.chains} chains, {len(manifest.tables)} tables, "
        f"schema revision {manifest.schema_revision}"
    )


def restore_command(
    archive: Annotated[Path, typer.Argument(help="An archive written by incidents admin backup")],
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace a database that already holds data"),
    ] = False,
) -> None:
    """Load an archive into the database (IM_DATABASE_URL), all or nothing.

    Refuses a database that already holds events, tokens or users unless --force,
    which replaces everything the platform stores there. The archive's checksums and
    hash chains are checked before anything is committed, and every chain is
    verified again once restored; a tampered archive changes nothing. Stop the
    servers using the database first. Exit status 3: a hash chain is broken.
    """
    from incidents.app import load_configuration, open_database

    settings = load_configuration()
    # The restore builds the schema at the archive's revision itself.
    engine = open_database(settings, apply_migrations=False).engine
    where = mask_url_password(settings.database_url)
    try:
        with _progress("loading") as report:
            result = restore_database(engine, archive, force=force, progress=report)
    except BrokenChain as exc:
        raise CliError(f"{archive}: {exc}; nothing was restored", EXIT_BROKEN_CHAIN) from None
    except ArchiveError as exc:
        raise CliError(f"{archive}: {exc}; nothing was restored") from None
    except TargetNotEmpty as exc:
        raise CliError(f"{where}: {exc}") from None
    finally:
        engine.dispose()
    chains = result.chains
    if chains.broken is not None:
        raise CliError(
            f"restored {archive} into {where}, but the hash chain of {chains.broken}",
            EXIT_BROKEN_CHAIN,
        )
    typer.echo(
        f"restored {archive} into {where}: {chains.events} events in {chains.chains} chains, "
        f"schema revision {result.manifest.schema_revision} -> {result.revision}; "
        "every hash chain verified"
    )
