"""The web console's session: the API token in an HttpOnly cookie, guarded against CSRF.

The console signs in by posting an API token once; the server keeps it in a cookie the
page's scripts cannot read (``HttpOnly``), that the browser sends only to this site
(``SameSite=Strict``), and never in a URL. That lets the browser's ``EventSource``,
which cannot send an ``Authorization`` header, open the existing SSE endpoints.

A cookie is sent by the browser on its own, so a request that changes something must
also prove it comes from a console page: it carries ``X-CSRF-Token``, a keyed hash of
the session's token that only pages served to the signed-in browser contain. Safe
requests (GET, HEAD) need no proof. WebSocket upgrades never use the cookie.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import HTTPConnection

COOKIE = "im_console"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRefused(Exception):
    """A cookie-authenticated request that changes state came without a valid proof."""


def csrf_token(secret: bytes, token: str) -> str:
    """The CSRF proof of a session: bound to its token, useless without the secret."""
    return hmac.new(secret, b"csrf\x00" + token.encode(), hashlib.sha256).hexdigest()


def cookie_credential(connection: HTTPConnection, secret: bytes) -> str | None:
    """The console session's token, if this request may use it (None if there is none).

    Raises :class:`CsrfRefused` for a state-changing request without the right proof.
    """
    if connection.scope.get("type") != "http":
        return None
    token = connection.cookies.get(COOKIE)
    if not token:
        return None
    method = connection.scope.get("method", "GET")
    if method not in SAFE_METHODS:
        proof = connection.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(proof, csrf_token(secret, token)):
            raise CsrfRefused
    return token
