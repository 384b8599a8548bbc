"""The web console's session cookie, guarded against CSRF.

Signing in creates a session on the server (:mod:`incidents.sessions.console`); the
browser gets only its random id, in a cookie the page's scripts cannot read
(``HttpOnly``), that the browser sends only to this site (``SameSite=Strict``), and
never in a URL. That lets the browser's ``EventSource``, which cannot send an
``Authorization`` header, open the existing SSE endpoints.

A cookie is sent by the browser on its own, so a request that changes something must
also prove it comes from a console page: it carries ``X-CSRF-Token``, a keyed hash of
the session id that only pages served to the signed-in browser contain. Safe requests
(GET, HEAD) need no proof. WebSocket upgrades never use the cookie.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import HTTPConnection

from incidents.identity.secret_comparison import same_secret

COOKIE = "im_console"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRefused(Exception):
    """A cookie-authenticated request that changes state came without a valid proof."""


def csrf_token(secret: bytes, session_id: str) -> str:
    """The CSRF proof of a session: bound to its id, useless without the secret."""
    return hmac.new(secret, b"csrf\x00" + session_id.encode(), hashlib.sha256).hexdigest()


def cookie_session_id(connection: HTTPConnection, secret: bytes) -> str | None:
    """The console session id the request carries, if it may use it (None if none).

    Raises :class:`CsrfRefused` for a state-changing request without the right proof.
    """
    if connection.scope.get("type") != "http":
        return None
    session_id = connection.cookies.get(COOKIE)
    if not session_id:
        return None
    method = connection.scope.get("method", "GET")
    if method not in SAFE_METHODS:
        proof = connection.headers.get(CSRF_HEADER, "")
        if not same_secret(proof, csrf_token(secret, session_id)):
            raise CsrfRefused
    return session_id
