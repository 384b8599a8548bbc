"""The backup archive: a tar file with a manifest and one gzip'd JSON-lines file per table.

::

    manifest.json                    what the archive holds (below)
    tables/<table>.jsonl.gz          one JSON array per row, columns in manifest order

The manifest names the format and its version, the schema (Alembic) revision the
rows belong to, the log position and chain count, and for every table its columns,
which of them are binary (base64 in the rows), its row count and the SHA-256 of its
file. Plain tools can read it: ``tar -xOf backup.tar tables/users.jsonl.gz | zcat``.

The checksums catch a damaged or carelessly edited archive before anything is
written; the hash chains, walked while the events are loaded, catch an edited event
even when the checksums were recomputed.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import os
import re
import tarfile
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

FORMAT = "incidents-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class ArchiveError(Exception):
    """The archive cannot be used; the message says why, in one line."""


def table_file(name: str) -> str:
    """Where a table's rows are inside the archive."""
    return f"tables/{name}.jsonl.gz"


@dataclass(frozen=True, slots=True)
class TableEntry:
    """One table of the archive."""

    name: str
    columns: tuple[str, ...]
    # Columns whose values are bytes (stored as base64 text).
    binary: frozenset[str]
    rows: int
    sha256: str

    @property
    def file(self) -> str:
        return table_file(self.name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "columns": list(self.columns),
            "binary": sorted(self.binary),
            "rows": self.rows,
            "sha256": self.sha256,
        }


@dataclass(frozen=True, slots=True)
class Manifest:
    """What an archive holds."""

    created_at: str
    software: str
    source_backend: str
    schema_revision: str
    log_position: int
    chains: int
    tables: tuple[TableEntry, ...]

    def table(self, name: str) -> TableEntry | None:
        return next((t for t in self.tables if t.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created_at": self.created_at,
            "software": self.software,
            "source_backend": self.source_backend,
            "schema_revision": self.schema_revision,
            "log_position": self.log_position,
            "chains": self.chains,
            "tables": [t.as_dict() for t in self.tables],
        }


def _field(document: dict[str, Any], key: str, kind: type, where: str = "manifest") -> Any:
    value = document.get(key)
    # bool is an int to Python; a count of True is still a tampered manifest.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ArchiveError(f"{where}: {key!r} is missing or not a {kind.__name__}")
    return value


def _table_entry(document: Any) -> TableEntry:
    if not isinstance(document, dict):
        raise ArchiveError("manifest: every entry of 'tables' must be an object")
    name = _field(document, "name", str)
    where = f"manifest: table {name!r}"
    if not _NAME.fullmatch(name):
        raise ArchiveError(f"{where}: not a table name")
    if document.get("file") != table_file(name):
        raise ArchiveError(f"{where}: its file must be {table_file(name)}")
    columns = _field(document, "columns", list, where)
    binary = _field(document, "binary", list, where)
    if not columns or not all(isinstance(c, str) and _NAME.fullmatch(c) for c in columns):
        raise ArchiveError(f"{where}: 'columns' must list column names")
    if len(set(columns)) != len(columns) or not set(binary) <= set(columns):
        raise ArchiveError(f"{where}: 'columns' repeat a name or 'binary' names another")
    rows = _field(document, "rows", int, where)
    digest = _field(document, "sha256", str, where)
    if rows < 0 or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ArchiveError(f"{where}: 'rows' or 'sha256' is malformed")
    return TableEntry(name, tuple(columns), frozenset(binary), rows, digest)


def parse_manifest(raw: bytes) -> Manifest:
    """The manifest in ``raw``; :class:`ArchiveError` if it is not one this build reads."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ArchiveError("manifest.json is not valid JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ArchiveError(f"manifest.json does not describe an {FORMAT} archive")
    if document.get("version") != FORMAT_VERSION:
        raise ArchiveError(
            f"the archive has format version {document.get('version')!r}; "
            f"this build reads version {FORMAT_VERSION}"
        )
    tables = tuple(_table_entry(t) for t in _field(document, "tables", list))
    if len({t.name for t in tables}) != len(tables):
        raise ArchiveError("manifest: a table is listed twice")
    return Manifest(
        created_at=_field(document, "created_at", str),
        software=_field(document, "software", str),
        source_backend=_field(document, "source_backend", str),
        schema_revision=_field(document, "schema_revision", str),
        log_position=_field(document, "log_position", int),
        chains=_field(document, "chains", int),
        tables=tables,
    )


def encode_row(row: Sequence[Any], binary: Sequence[bool]) -> bytes:
    """One row as a JSON line; bytes values as base64."""
    values = [
        base64.b64encode(bytes(value)).decode("ascii") if is_bytes and value is not None else value
        for value, is_bytes in zip(row, binary, strict=True)
    ]
    return orjson.dumps(values) + b"\n"


class TableWriter:
    """Writes one table's rows to a gzip'd JSON-lines file and hashes the result."""

    def __init__(self, path: Path, columns: Sequence[str], binary: frozenset[str]) -> None:
        self.path = path
        self.columns = tuple(columns)
        self.binary = binary
        self._is_binary = [c in binary for c in self.columns]
        self._raw = path.open("wb")
        # mtime=0: the same rows always give the same bytes, and the same checksum.
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0)
        self.rows = 0

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        self._gzip.write(b"".join(encode_row(row, self._is_binary) for row in rows))
        self.rows += len(rows)

    def finish(self, name: str) -> TableEntry:
        self._gzip.close()
        self._raw.close()
        return TableEntry(name, self.columns, self.binary, self.rows, _sha256_of(self.path))


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_archive(path: Path, manifest: Manifest, files: dict[str, Path]) -> None:
    """Write the tar, readable by its owner only: the manifest first, then each table."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with (
        os.fdopen(fd, "wb") as out,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        raw = orjson.dumps(manifest.as_dict(), option=orjson.OPT_INDENT_2)
        _add(tar, MANIFEST, io.BytesIO(raw), len(raw))
        for table in manifest.tables:
            source = files[table.name]
            with source.open("rb") as f:
                _add(tar, table.file, f, source.stat().st_size)


def _add(tar: tarfile.TarFile, name: str, data: IO[bytes], size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(time.time())
    tar.addfile(info, data)


class ArchiveReader:
    """Reads and checks an archive; nothing is trusted before :meth:`check`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, "r:")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            raise ArchiveError("no such file") from None
        except (tarfile.TarError, OSError) as exc:
            raise ArchiveError(f"not a backup archive ({exc})") from None
        self._members = {m.name: m for m in self._tar.getmembers()}
        self.manifest = parse_manifest(self._read(MANIFEST))

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, name: str) -> IO[bytes]:
        member = self._members.get(name)
        if member is None or not member.isfile():
            raise ArchiveError(f"the archive holds no {name}")
        f = self._tar.extractfile(member)
        if f is None:  # pragma: no cover - isfile() members always extract
            raise ArchiveError(f"the archive's {name} cannot be read")
        return f

    def _read(self, name: str) -> bytes:
        with self._open(name) as f:
            return f.read()

    def check(self) -> None:
        """Compare every table file with its checksum; refuse files the manifest omits."""
        expected = {MANIFEST} | {t.file for t in self.manifest.tables}
        extra = sorted(set(self._members) - expected)
        if extra:
            raise ArchiveError(f"the archive holds {extra[0]}, which its manifest does not list")
        for table in self.manifest.tables:
            digest = hashlib.sha256()
            with self._open(table.file) as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            if digest.hexdigest() != table.sha256:
                raise ArchiveError(
                    f"{table.file} does not match its checksum in the manifest "
                    "(the archive is damaged or was altered)"
                )

    def rows(self, table: TableEntry, batch: int = 1000) -> Iterator[list[list[Any]]]:
        """The table's rows in batches, binary columns decoded; checks shape and count."""
        is_binary = [c in table.binary for c in table.columns]
        width = len(table.columns)
        seen = 0
        out: list[list[Any]] = []
        with self._open(table.file) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as lines:
            try:
                for line in lines:
                    seen += 1
                    out.append(_decode(line, is_binary, width, table.name, seen))
                    if len(out) >= batch:
                        yield out
                        out = []
            except (OSError, EOFError, zlib.error) as exc:
                raise ArchiveError(f"{table.file} is not valid gzip ({exc})") from None
        if out:
            yield out
        if seen != table.rows:
            raise ArchiveError(f"{table.file} holds {seen} rows but the manifest says {table.rows}")


def _decode(line: bytes, is_binary: list[bool], width: int, table: str, n: int) -> list[Any]:
    try:
        values = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ArchiveError(f"{table_file(table)}: row {n} is not valid JSON") from None
    if not isinstance(values, list) or len(values) != width:
        raise ArchiveError(f"{table_file(table)}: row {n} does not have {width} columns")
    for i, flag in enumerate(is_binary):
        if flag and values[i] is not None:
            try:
                values[i] = base64.b64decode(values[i], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise ArchiveError(f"{table_file(table)}: row {n} has a bad base64 value") from None
    return values
