"""Canonical, versioned correlation fingerprints.

Each field is written as its name and value, both length-prefixed, so values cannot
run together: (``ab``, ``c``) and (``a``, ``bc``) give different fingerprints. The
version prefix lets the encoding change later without old and new colliding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

FINGERPRINT_VERSION = "v1"


def _put(digest: hashlib._Hash, text: str) -> None:
    raw = text.encode("utf-8")
    digest.update(len(raw).to_bytes(4, "big"))
    digest.update(raw)


def fingerprint(fields: Sequence[tuple[str, str]]) -> str:
    """``v1:<hex>`` over the (name, value) pairs, in the order the rule lists them."""
    digest = hashlib.sha256()
    _put(digest, FINGERPRINT_VERSION)
    digest.update(len(fields).to_bytes(4, "big"))
    for name, value in fields:
        _put(digest, name)
        _put(digest, value)
    return f"{FINGERPRINT_VERSION}:{digest.hexdigest()[:40]}"
