"""The object store port: whole objects by key. Adapters: :mod:`.local` and
:mod:`incidents.store.s3_objects`."""

from __future__ import annotations

from typing import Protocol


class ObjectStore(Protocol):
    """Stores immutable objects under string keys."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` (storing the same key again is harmless)."""
        ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is none under ``key``."""
        ...

    def exists(self, key: str) -> bool: ...
