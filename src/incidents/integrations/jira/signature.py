"""Jira webhook signatures: ``X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>``
(WebSub style), checked in constant time."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Hub-Signature"


class SignatureMissing(ValueError):
    """No signature header, or not of the form ``sha256=<hex>``."""


class SignatureMismatch(ValueError):
    """The signature does not match the body under the configured secret."""


def sign(secret: str, body: bytes) -> str:
    """The header value a sender computes for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(header: str | None, body: bytes, secret: str) -> None:
    """Raise unless ``header`` signs ``body`` with ``secret``."""
    if not header:
        raise SignatureMissing(f"no {SIGNATURE_HEADER} header")
    method, _, digest = header.strip().partition("=")
    if method.lower() != "sha256" or not digest:
        raise SignatureMissing(f"{SIGNATURE_HEADER} must be sha256=<hex digest>")
    expected = sign(secret, body).partition("=")[2]
    if not hmac.compare_digest(expected.encode(), digest.strip().lower().encode()):
        raise SignatureMismatch(f"{SIGNATURE_HEADER} does not match the body")
