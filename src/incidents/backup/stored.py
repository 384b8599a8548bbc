"""Backup archives kept in the object store (the artifacts' directory or bucket), each
under the SHA-256 of its bytes, apart from incident artifacts.

Only administration reaches them: the ``incidents admin`` commands, which run with the
database's own credentials. No API endpoint lists or serves them.
"""

from __future__ import annotations

from pathlib import Path

from incidents.artifacts.content import HEAD_BYTES, ContentError, check_content, file_key
from incidents.artifacts.ports import ObjectStore, StoredObject
from incidents.artifacts.service import check_digest
from incidents.artifacts.verified import DamagedObject, fetch_verified

TAR = "application/x-tar"


class StoredBackupError(ValueError):
    """A backup that cannot be stored or fetched (the message says why)."""


class StoredBackups:
    """Backup archives in ``objects`` (a store of their own: a ``backups`` directory or
    key prefix), at most ``max_bytes`` each."""

    def __init__(self, objects: ObjectStore, max_bytes: int) -> None:
        self._objects = objects
        self.max_bytes = max_bytes

    def put(self, archive: Path) -> StoredObject:
        """Store the archive at ``archive`` under its digest (again: nothing changes)."""
        size = archive.stat().st_size
        if size > self.max_bytes:
            raise StoredBackupError(
                f"the backup is {size} bytes; IM_ARTIFACTS_BACKUP_MAX_BYTES is {self.max_bytes}"
            )
        with archive.open("rb") as source:
            head = source.read(HEAD_BYTES)
        try:
            check_content(TAR, head)
        except ContentError as exc:
            raise StoredBackupError(f"not a backup archive ({exc})") from None
        digest = file_key(archive)
        self._objects.put_file(digest, archive, TAR)
        return StoredObject(digest, size, 0)

    def listing(self) -> list[StoredObject]:
        """Every stored backup, oldest first."""
        return sorted(self._objects.listing(), key=lambda o: (o.modified_us, o.key))

    def fetch(self, digest: str, target: Path) -> None:
        """Write the backup stored under ``digest`` to ``target``, checked against it."""
        try:
            check_digest(digest)
        except ValueError:
            raise StoredBackupError(f"{digest!r} is not a SHA-256 digest (64 hex digits)") from None
        try:
            found = fetch_verified(self._objects, digest, digest, target)
        except DamagedObject:
            raise StoredBackupError(
                f"the stored backup {digest} is damaged: its bytes changed"
            ) from None
        if not found:
            raise StoredBackupError(f"no stored backup {digest}; see incidents admin backup-list")
