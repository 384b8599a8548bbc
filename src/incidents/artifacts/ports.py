"""The object store port: whole objects by key. Adapters: :mod:`.local` and
:mod:`incidents.store.s3_objects`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class ObjectStoreError(Exception):
    """The object store did not answer as it should (a missing bucket or directory, no
    permission, unreachable). The message is one line naming the store (bucket and
    endpoint, or directory) and the reason, and never a credential."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object as a listing shows it."""

    key: str
    size: int
    modified_us: int


class ObjectStore(Protocol):
    """Stores immutable objects under string keys. Every method raises
    :class:`ObjectStoreError` when the store itself fails."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` (storing the same key again is harmless)."""
        ...

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at ``path`` under ``key``, streamed (for objects too large
        to hold in memory, such as backup archives)."""
        ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is none under ``key``."""
        ...

    def get_file(self, key: str, path: Path) -> bool:
        """Write the object to ``path``, streamed; False if there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the object under ``key`` (nothing to do if there is none)."""
        ...

    def listing(self) -> list[StoredObject]:
        """Every object, by key."""
        ...
