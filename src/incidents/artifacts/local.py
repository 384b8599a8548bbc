"""The object store in a local directory (the default, under the data directory)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from incidents.artifacts.ports import ObjectStoreError, StoredObject


class LocalDirectoryStore:
    """Objects as files ``root/<first two characters>/<key>``, written atomically."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @contextmanager
    def _reported(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            where = exc.filename or self._root
            raise ObjectStoreError(
                f"object store directory {self._root}: {exc.strerror or exc} ({where}); "
                "check that it exists and that the server's user may read and write it"
            ) from None

    def _absent(self) -> bool:
        """For an object not found: True, after making sure the directory could hold it
        (a path through a file is a broken setting, not an empty store)."""
        existing = self._root
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise ObjectStoreError(
                f"object store directory {self._root}: {existing} is not a directory; "
                "fix IM_ARTIFACTS_DIR"
            )
        return True

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

        def write(out: BinaryIO) -> None:
            out.write(data)

        with self._reported():
            if path.exists():
                return  # content-addressed: the same key holds the same bytes
            self._write(path, write)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)

        def copy(out: BinaryIO) -> None:
            with path.open("rb") as source:
                shutil.copyfileobj(source, out, 1024 * 1024)

        with self._reported():
            if target.exists():
                return
            self._write(target, copy)

    def get(self, key: str) -> bytes | None:
        with self._reported():
            try:
                return self._path(key).read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                self._absent()
                return None

    def get_file(self, key: str, path: Path) -> bool:
        source = self._path(key)
        with self._reported():
            if not source.is_file():
                return not self._absent()
            shutil.copyfile(source, path)
        return True

    def exists(self, key: str) -> bool:
        with self._reported():
            return self._path(key).is_file() or not self._absent()

    def delete(self, key: str) -> None:
        with self._reported():
            self._path(key).unlink(missing_ok=True)

    def listing(self) -> list[StoredObject]:
        with self._reported():
            if not self._root.is_dir():
                self._absent()
                return []
            found = []
            for shard in sorted(self._root.iterdir()):
                if not shard.is_dir() or len(shard.name) != 2:
                    continue
                for path in sorted(shard.iterdir()):
                    if path.is_file() and not path.name.startswith("."):
                        stat = path.stat()
                        found.append(
                            StoredObject(path.name, stat.st_size, stat.st_mtime_ns // 1000)
                        )
            return found
