"""A local OpenID Connect provider for the console's sign-in by redirect.

A real HTTP server on 127.0.0.1 that follows the documented behaviour of the
authorization code flow: OpenID Connect Core 1.0 §3.1 (authorization endpoint, ID
token, nonce), RFC 6749 §4.1, §5.2 (token endpoint and its errors), §2.3.1 (client
authentication, Basic or in the body, never both) and RFC 7636 (PKCE, S256 only). It
refuses what a provider refuses: an unknown client or an unregistered redirect URI
at the authorization endpoint (shown, never redirected), a wrong client secret
(401 invalid_client), a code used twice, expired, or presented with another
redirect_uri or client (invalid_grant), and a wrong or missing PKCE verifier.

The user who signs in is whoever the test says (``user``); ``deny`` answers as a
user who refused consent (``error=access_denied``); ``down`` answers every request
with 503, as a provider in an outage does; ``published`` replaces entries of the
discovery document (a misconfigured provider). ``requests`` lists the paths asked for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CODE_SECONDS = 60


@dataclass
class Issued:
    """An authorization code and what it was issued for."""

    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str
    user: dict[str, Any]
    issued_at: float
    used: bool = False


@dataclass
class Client:
    """A registered client: its secret (empty for a public client) and redirect URIs."""

    client_id: str
    secret: str
    redirect_uris: tuple[str, ...]
    # How it must authenticate at the token endpoint (RFC 7591 token_endpoint_auth_method).
    auth_method: str = "client_secret_basic"


@dataclass
class OidcProvider:
    """The provider's state; tests change ``user``, ``deny`` or ``nonce_override``."""

    issuer: str = ""
    clients: dict[str, Client] = field(default_factory=dict)
    user: dict[str, Any] = field(
        default_factory=lambda: {"email": "ada@example.com", "groups": ["sre"]}
    )
    deny: bool = False
    # Sign ID tokens with this nonce instead of the request's (a misbehaving provider).
    nonce_override: str | None = None
    down: bool = False
    published: dict[str, Any] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    codes: dict[str, Issued] = field(default_factory=dict)
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, client: Client) -> None:
        self.clients[client.client_id] = client

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            **self.published,
        }

    def jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": "fake-1", "use": "sig", "alg": "RS256"}]}

    def mint(self, audience: str, *, seconds: int = 300) -> str:
        """A token for the current ``user``, issued to ``audience`` and valid for
        ``seconds``: what a user would copy from the provider to paste."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "user-" + hashlib.sha256(self.user["email"].encode()).hexdigest()[:12],
            "aud": audience,
            "iat": now,
            "exp": now + seconds,
            "email": self.user["email"],
            "email_verified": True,
            "groups": self.user.get("groups", []),
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "fake-1"})

    # --- the authorization endpoint ----------------------------------------------------

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        client = self.clients.get(query.get("client_id", ""))
        redirect_uri = query.get("redirect_uri", "")
        if client is None or redirect_uri not in client.redirect_uris:
            # RFC 6749 §4.1.2.1: never redirect to an unverified URI.
            return 400, {"Content-Type": "text/plain"}, b"unknown client or redirect_uri"
        state = query.get("state")

        def back(**params: str) -> tuple[int, dict[str, str], bytes]:
            if state is not None:
                params["state"] = state
            return 302, {"Location": f"{redirect_uri}?{urlencode(params)}"}, b""

        if query.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if "openid" not in query.get("scope", "").split():
            return back(error="invalid_scope")
        challenge = query.get("code_challenge", "")
        if not challenge or query.get("code_challenge_method") != "S256":
            return back(error="invalid_request", error_description="PKCE S256 is required")
        if self.deny:
            return back(error="access_denied")
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = Issued(
                client.client_id,
                redirect_uri,
                query.get("nonce"),
                challenge,
                dict(self.user),
                time.time(),
            )
        return back(code=code)

    # --- the token endpoint ------------------------------------------------------------

    def _client_of(self, headers: Any, form: dict[str, str]) -> Client | str:
        """The authenticated client, or the error code to answer."""
        basic = headers.get("Authorization", "")
        in_body = "client_secret" in form
        if basic.startswith("Basic "):
            if in_body:
                return "invalid_request"  # RFC 6749 §2.3: one method per request
            try:
                pair = base64.b64decode(basic[6:], validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return "invalid_client"
            client_id, _, secret = pair.partition(":")
            client_id, secret = (
                unquote(client_id.replace("+", " ")),
                unquote(secret.replace("+", " ")),
            )
            method = "client_secret_basic"
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
            method = "client_secret_post" if in_body else "none"
        client = self.clients.get(client_id)
        if client is None:
            return "invalid_client"
        if client.secret:
            if method != client.auth_method or not secrets.compare_digest(secret, client.secret):
                return "invalid_client"
        elif method != "none":
            return "invalid_client"
        return client

    def token(self, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if not headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return _error(400, "invalid_request")
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        client = self._client_of(headers, form)
        if isinstance(client, str):
            return _error(401 if client == "invalid_client" else 400, client)
        if form.get("grant_type") != "authorization_code":
            return _error(400, "unsupported_grant_type")
        with self.lock:
            issued = self.codes.get(form.get("code", ""))
            if issued is None:
                return _error(400, "invalid_grant")
            reused, issued.used = issued.used, True
        if reused or time.time() - issued.issued_at > CODE_SECONDS:
            return _error(400, "invalid_grant")
        if issued.client_id != client.client_id or form.get("redirect_uri") != issued.redirect_uri:
            return _error(400, "invalid_grant")
        verifier = form.get("code_verifier", "")
        if not 43 <= len(verifier) <= 128 or s256(verifier) != issued.challenge:
            return _error(400, "invalid_grant")  # RFC 7636 §4.6
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "user-" + hashlib.sha256(issued.user["email"].encode()).hexdigest()[:12],
            "aud": client.client_id,
            "iat": now,
            "exp": now + 300,
            "email": issued.user["email"],
            "email_verified": True,
            "groups": issued.user.get("groups", []),
        }
        nonce = self.nonce_override if self.nonce_override is not None else issued.nonce
        if nonce is not None:
            claims["nonce"] = nonce
        id_token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "fake-1"})
        answer = {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }
        return 200, {"Content-Type": "application/json", "Cache-Control": "no-store"}, _json(answer)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _error(status: int, code: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="fake-oidc"'
    return status, headers, _json({"error": code})


@contextmanager
def running_provider() -> Iterator[OidcProvider]:
    """The provider, served on a free port of 127.0.0.1 while the block runs."""
    state = OidcProvider()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _unavailable(self) -> bool:
            with state.lock:
                state.requests.append(urlsplit(self.path).path)
            if state.down:
                self._send(503, {"Content-Type": "text/plain", "Retry-After": "30"}, b"down")
            return state.down

        def do_GET(self) -> None:
            if self._unavailable():
                return
            parts = urlsplit(self.path)
            if parts.path == "/.well-known/openid-configuration":
                self._send(200, {"Content-Type": "application/json"}, _json(state.discovery()))
            elif parts.path == "/jwks":
                self._send(200, {"Content-Type": "application/json"}, _json(state.jwks()))
            elif parts.path == "/authorize":
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                self._send(*state.authorize(query))
            else:
                self._send(404, {"Content-Type": "text/plain"}, b"not found")

        def do_POST(self) -> None:
            if self._unavailable():
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if urlsplit(self.path).path == "/token":
                self._send(*state.token(self.headers, body))
            else:
                self._send(404, {"Content-Type": "text/plain"}, b"not found")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
