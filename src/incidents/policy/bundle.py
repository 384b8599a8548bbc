"""Policy bundles: Rego policies packed as a gzip'd tar (the shape of an OPA bundle),
checked before use and unpacked into a directory the embedded decision point loads.

Only ``.rego`` files are loaded (from anywhere in the archive, by file name); OPA's
``.manifest`` is ignored, and anything else (data documents, links, devices) is
refused rather than silently left out.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from incidents.policy.decision_point import EmbeddedDecisionPoint
from incidents.policy.model import PolicyUnavailable, Subject

MAX_FILES = 256
_IGNORED = frozenset({".manifest"})


class BundleError(ValueError):
    """A bundle that cannot be used (the message says why)."""


def rego_files(data: bytes) -> dict[str, str]:
    """The bundle's policies by file name (its ``.rego`` files, as text)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            files = _policies(archive)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"not a gzip'd tar archive: {exc}") from None
    if not files:
        raise BundleError("the bundle holds no .rego policy file")
    return files


def _policies(archive: tarfile.TarFile) -> dict[str, str]:
    files: dict[str, str] = {}
    for member in archive:
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


def write_policies(files: dict[str, str], target: Path) -> Path:
    """Write the policies to ``target`` (a new directory, made whole then renamed into
    place, so a decision point never loads half a bundle); ``target`` if it exists."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".bundle-", dir=target.parent))
    try:
        for name, text in files.items():
            (scratch / name).write_text(text, encoding="utf-8")
        os.replace(scratch, target)
    except FileExistsError:
        pass  # another process unpacked the same bundle meanwhile
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def check_policies(files: dict[str, str]) -> None:
    """Refuse policies that do not load, or give no decision for a subject."""
    with tempfile.TemporaryDirectory(prefix="incidents-policy-check-") as scratch:
        directory = write_policies(files, Path(scratch) / "policies")
        try:
            EmbeddedDecisionPoint(directory).decide(Subject("bundle-check@example.com"))
        except PolicyUnavailable as exc:
            # The Rego compiler's messages span many lines: one line, the start of it.
            detail = " ".join(str(exc).split())
            raise BundleError(detail if len(detail) <= 300 else detail[:297] + "...") from None
