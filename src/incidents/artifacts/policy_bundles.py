"""Policy bundles kept in the object store under their SHA-256 (``policies/`` of the
artifacts' directory or bucket), and read back, checked against their digest, by the
server that is told to load one (``IM_POLICY_BUNDLE``)."""

from __future__ import annotations

from incidents.artifacts.content import ContentError, check_content, content_key
from incidents.artifacts.ports import ObjectStore, StoredObject
from incidents.artifacts.service import check_digest
from incidents.artifacts.verified import DamagedObject, read_verified
from incidents.policy.bundle import BundleError, check_policies, rego_files

GZIP = "application/gzip"


class PolicyBundles:
    """Stored policy bundles in ``objects``, at most ``max_bytes`` each."""

    def __init__(self, objects: ObjectStore, max_bytes: int) -> None:
        self._objects = objects
        self.max_bytes = max_bytes

    def put(self, data: bytes) -> StoredObject:
        """Check a bundle (gzip'd tar of Rego that loads and decides) and store it."""
        if len(data) > self.max_bytes:
            raise BundleError(f"{len(data)} bytes; IM_ARTIFACTS_MAX_BYTES is {self.max_bytes}")
        try:
            check_content(GZIP, data)
        except ContentError as exc:
            raise BundleError(str(exc)) from None
        check_policies(rego_files(data))
        digest = content_key(data)
        self._objects.put(digest, data, GZIP)
        return StoredObject(digest, len(data), 0)

    def listing(self) -> list[StoredObject]:
        """Every stored bundle, oldest first."""
        return sorted(self._objects.listing(), key=lambda o: (o.modified_us, o.key))

    def policies(self, digest: str) -> dict[str, str]:
        """The bundle's policies, read from the stored bytes after checking them against
        ``digest``: on every start, so nothing written beside the store since can
        change what the server decides with."""
        try:
            check_digest(digest)
        except ValueError:
            raise BundleError(f"{digest!r} is not a SHA-256 digest (64 hex digits)") from None
        try:
            data = read_verified(self._objects, digest, digest)
        except DamagedObject:
            raise BundleError(
                f"the stored policy bundle {digest} is damaged: its bytes changed"
            ) from None
        if data is None:
            raise BundleError(f"no stored policy bundle {digest}")
        return rego_files(data)
