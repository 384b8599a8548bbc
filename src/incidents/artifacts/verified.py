"""Reading content-addressed objects back: the bytes are served only if they still
hash to the digest they are stored under (attachments, stored exports, policy bundles
and backups alike)."""

from __future__ import annotations

from pathlib import Path

from incidents.artifacts.content import content_key, file_key
from incidents.artifacts.ports import ObjectStore


class DamagedObject(Exception):
    """The stored bytes no longer hash to their digest (altered or truncated)."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        super().__init__(f"the stored object {digest} is damaged: its bytes changed")


def read_verified(objects: ObjectStore, key: str, digest: str) -> bytes | None:
    """The bytes under ``key``, None if there are none; :class:`DamagedObject` if they do
    not hash to ``digest``."""
    data = objects.get(key)
    if data is not None and content_key(data) != digest:
        raise DamagedObject(digest)
    return data


def fetch_verified(objects: ObjectStore, key: str, digest: str, target: Path) -> bool:
    """Write the object under ``key`` to ``target`` (streamed); False if there is none.
    :class:`DamagedObject`, and nothing left at ``target``, if it does not hash to
    ``digest``."""
    if not objects.get_file(key, target):
        return False
    if file_key(target) != digest:
        target.unlink(missing_ok=True)
        raise DamagedObject(digest)
    return True
