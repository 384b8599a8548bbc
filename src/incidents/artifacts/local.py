"""The object store in a local directory (the default, under the data directory)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from incidents.artifacts.ports import StoredObject


class LocalDirectoryStore:
    """Objects as files ``root/<first two characters>/<key>``, written atomically."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, key: str) -> Path:
        if not key or "/" in key or "\\" in key or key.startswith("."):
            raise ValueError(f"not an object key: {key!r}")
        return self._root / key[:2] / key

    def _write(self, path: Path, fill: Callable[[BinaryIO], None]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the target and renamed: a reader never sees half an object.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        if path.exists():
            return  # content-addressed: the same key holds the same bytes

        def write(out: BinaryIO) -> None:
            out.write(data)

        self._write(path, write)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)
        if target.exists():
            return

        def copy(out: BinaryIO) -> None:
            with path.open("rb") as source:
                shutil.copyfileobj(source, out, 1024 * 1024)

        self._write(target, copy)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def get_file(self, key: str, path: Path) -> bool:
        source = self._path(key)
        if not source.is_file():
            return False
        shutil.copyfile(source, path)
        return True

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def listing(self) -> list[StoredObject]:
        if not self._root.is_dir():
            return []
        found = []
        for shard in sorted(self._root.iterdir()):
            if not shard.is_dir() or len(shard.name) != 2:
                continue
            for path in sorted(shard.iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    stat = path.stat()
                    found.append(StoredObject(path.name, stat.st_size, stat.st_mtime_ns // 1000))
        return found
