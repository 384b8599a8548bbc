"""What an artifact may be: the content types accepted, and a check that the bytes are
what the declared type says (an executable uploaded as image/png is refused)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path


class ContentError(ValueError):
    """Unaccepted content type, or bytes that do not match it (a 415)."""


def _starts(*magic: bytes) -> Callable[[bytes], bool]:
    return lambda data: any(data.startswith(m) for m in magic)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in data


def _json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _tar(data: bytes) -> bool:
    # POSIX (ustar, pax) archives name their format at offset 257 of the first header.
    return data[257:262] == b"ustar"


# Accepted types and how their bytes are recognised.
CHECKS: dict[str, Callable[[bytes], bool]] = {
    "image/png": _starts(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": _starts(b"\xff\xd8\xff"),
    "image/gif": _starts(b"GIF87a", b"GIF89a"),
    "application/pdf": _starts(b"%PDF-"),
    "application/gzip": _starts(b"\x1f\x8b"),
    "application/zip": _starts(b"PK\x03\x04", b"PK\x05\x06"),
    "application/x-tar": _tar,
    "application/json": _json,
    "text/plain": _utf8,
    "text/markdown": _utf8,
    "text/csv": _utf8,
}


def media_type(header: str | None) -> str:
    """The bare media type of a Content-Type header, lowercased."""
    return (header or "").split(";", 1)[0].strip().lower()


def check_content(content_type: str, data: bytes) -> None:
    """Raise :class:`ContentError` unless ``data`` is acceptable as ``content_type``."""
    check = CHECKS.get(content_type)
    if check is None:
        raise ContentError(
            f"content type {content_type or '(none)'!r} is not accepted; "
            f"accepted: {', '.join(sorted(CHECKS))}"
        )
    if not data:
        raise ContentError("the artifact is empty")
    if not check(data):
        raise ContentError(f"the content is not {content_type} (its bytes say otherwise)")


def content_key(data: bytes) -> str:
    """The artifact's address: the SHA-256 of its bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


# Enough of a file's start for every check above that looks at a prefix or a header.
HEAD_BYTES = 512


def file_key(path: Path) -> str:
    """:func:`content_key` of a file, read in blocks (a file may exceed memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()
