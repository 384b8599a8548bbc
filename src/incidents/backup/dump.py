"""``incidents admin backup``: the whole database, from one snapshot, into an archive."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, func, select, text

from incidents import __version__
from incidents.backup.archive import ArchiveError, Manifest, TableEntry, TableWriter, write_archive
from incidents.backup.database import (
    ProgressCallback,
    current_revision,
    shape_of,
    table_names,
)

# Rows fetched from the database (and written) at a time: bounded memory for any size.
BATCH_ROWS = 2000


@contextlib.contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A read transaction that sees one consistent state of every table.

    PostgreSQL: REPEATABLE READ, read only. SQLite (WAL): a read transaction keeps the
    snapshot of its first read until it ends; writers carry on meanwhile.
    """
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(text("SET TRANSACTION READ ONLY"))
            yield conn


def backup_database(
    engine: Engine, path: Path, *, progress: ProgressCallback | None = None
) -> Manifest:
    """Write every table of the platform to the archive at ``path``; return its manifest.

    The archive appears at ``path`` only once complete (written beside it, then
    renamed), readable by its owner only: it holds token hashes and instance secrets.
    """
    # Beside the output, not in /tmp: the table files are as large as the archive.
    with tempfile.TemporaryDirectory(prefix=".incidents-backup-", dir=path.parent) as tmp:
        with _snapshot(engine) as conn:
            revision = current_revision(conn)
            if revision is None:
                raise ArchiveError(
                    "the database has no schema yet (no migration applied): nothing to back up"
                )
            entries: list[TableEntry] = []
            files: dict[str, Path] = {}
            for name in table_names(conn):
                entries.append(_dump_table(conn, name, Path(tmp), progress))
                files[name] = Path(tmp) / f"{name}.jsonl.gz"
            log_position = conn.execute(text("SELECT position FROM log_head WHERE id = 1")).scalar()
            chains = conn.execute(text("SELECT count(*) FROM chain_heads")).scalar_one()
        manifest = Manifest(
            created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            software=f"incidents {__version__}",
            source_backend=engine.dialect.name,
            schema_revision=revision,
            log_position=int(log_position or 0),
            chains=int(chains),
            tables=tuple(entries),
        )
        partial = path.with_name(f".{path.name}.partial")
        try:
            write_archive(partial, manifest, files)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    return manifest


def _dump_table(
    conn: Connection, name: str, directory: Path, progress: ProgressCallback | None
) -> TableEntry:
    shape = shape_of(conn, name)
    clause = shape.clause()
    total = conn.execute(select(func.count()).select_from(clause)).scalar_one()
    writer = TableWriter(directory / f"{name}.jsonl.gz", tuple(shape.columns), shape.binary)
    # Primary-key order: the events by position, so a restore checks chains in one pass.
    order = [clause.c[key] for key in shape.primary_key]
    result = conn.execution_options(yield_per=BATCH_ROWS).execute(select(clause).order_by(*order))
    if progress is not None:
        progress(name, 0, total)
    for rows in result.partitions():
        writer.write(rows)
        if progress is not None:
            progress(name, writer.rows, total)
    return writer.finish(name)
