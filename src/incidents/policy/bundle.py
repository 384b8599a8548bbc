"""Policy bundles: Rego policies packed as a gzip'd tar (the shape of an OPA bundle),
checked before use and loaded by the embedded decision point from memory.

Only ``.rego`` files are loaded (from anywhere in the archive, by file name); OPA's
``.manifest`` is ignored, and anything else (data documents, links, devices) is
refused rather than silently left out. Sizes are checked from each member's header
before its bytes are read, so a small archive that unpacks to gigabytes is refused
without unpacking it.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from pathlib import PurePosixPath

from incidents.policy.decision_point import EmbeddedDecisionPoint
from incidents.policy.model import PolicyUnavailable, Subject

MAX_FILES = 256
# Members of any kind (directories and the ignored .manifest included).
MAX_MEMBERS = 4 * MAX_FILES
MAX_FILE_BYTES = 1024 * 1024
MAX_TOTAL_BYTES = 16 * 1024 * 1024
_IGNORED = frozenset({".manifest"})


class BundleError(ValueError):
    """A bundle that cannot be used (the message says why)."""


def rego_files(data: bytes) -> dict[str, str]:
    """The bundle's policies by file name (its ``.rego`` files, as text)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            files = _policies(archive)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise BundleError(f"not a gzip'd tar archive: {detail}") from None
    if not files:
        raise BundleError("the bundle holds no .rego policy file")
    return files


def _policies(archive: tarfile.TarFile) -> dict[str, str]:
    files: dict[str, str] = {}
    total = 0
    for count, member in enumerate(archive, 1):
        if count > MAX_MEMBERS:
            raise BundleError(f"more than {MAX_MEMBERS} entries in the archive")
        if member.size > MAX_FILE_BYTES:
            raise BundleError(
                f"{member.name}: {member.size} bytes unpacked; the limit is {MAX_FILE_BYTES}"
            )
        total += member.size
        if total > MAX_TOTAL_BYTES:
            raise BundleError(f"over {MAX_TOTAL_BYTES} bytes unpacked; refused")
        name = PurePosixPath(member.name).name
        if member.isdir() or name in _IGNORED:
            continue
        if not member.isfile() or not name.endswith(".rego"):
            raise BundleError(f"{member.name}: only .rego policy files can be loaded from a bundle")
        if name in files:
            raise BundleError(f"{name}: two policy files of the same name")
        if len(files) >= MAX_FILES:
            raise BundleError(f"more than {MAX_FILES} policy files")
        extracted = archive.extractfile(member)
        try:
            files[name] = (extracted.read() if extracted else b"").decode("utf-8")
        except UnicodeDecodeError:
            raise BundleError(f"{member.name}: not UTF-8 text") from None
    return files


def check_policies(files: dict[str, str]) -> None:
    """Refuse policies that do not load, or give no decision for a subject."""
    try:
        EmbeddedDecisionPoint(modules=files).decide(Subject("bundle-check@example.com"))
    except PolicyUnavailable as exc:
        # The Rego compiler's messages span many lines: one line, the start of it.
        detail = " ".join(str(exc).split())
        raise BundleError(detail if len(detail) <= 300 else detail[:297] + "...") from None
