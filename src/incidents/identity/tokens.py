"""API tokens: created once, stored only as a hash, checked on every request.

Tokens are 256-bit random strings, so a single SHA-256 is a sufficient verifier
(a slow password hash protects guessable secrets, which these are not).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update

from incidents.events.timeformat import now_micros
from incidents.store.schema import api_tokens

TOKEN_PREFIX = "im_"  # noqa: S105 - a public prefix, not a secret


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed: never the secret itself."""

    token_id: str
    subject: str
    name: str | None
    created_us: int
    revoked_us: int | None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def token_digest(token: str) -> str:
    """A token's SHA-256 in hex: how console sessions and rate limits refer to a token
    without holding it."""
    return _digest(token).hex()


class TokenNotFound(LookupError):
    """No token has the given id."""


class TokenService:
    """Creates, lists, revokes and authenticates API tokens.

    Successful lookups are cached for ``cache_seconds`` so the hot path does not hit
    the database on every request; a revocation therefore takes effect on running
    servers within that time.
    """

    def __init__(self, engine: Engine, cache_seconds: float = 5.0) -> None:
        self._engine = engine
        self._cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def create(self, subject: str, name: str | None = None) -> tuple[TokenInfo, str]:
        """Make a token for ``subject``; return its listing and the secret (shown once)."""
        subject = subject.strip()
        if not subject:
            raise ValueError("a token needs a user (for example alice@example.com)")
        token_id = "tok_" + secrets.token_hex(6)
        secret = f"{TOKEN_PREFIX}{secrets.token_urlsafe(32)}"
        info = TokenInfo(token_id, subject, name, now_micros(), None)
        with self._engine.begin() as conn:
            conn.execute(
                insert(api_tokens).values(
                    token_id=token_id,
                    subject=subject,
                    name=name,
                    token_hash=_digest(secret),
                    created_us=info.created_us,
                    revoked_us=None,
                )
            )
        return info, secret

    def list(self, subject: str | None = None) -> list[TokenInfo]:
        stmt = select(
            api_tokens.c.token_id,
            api_tokens.c.subject,
            api_tokens.c.name,
            api_tokens.c.created_us,
            api_tokens.c.revoked_us,
        ).order_by(api_tokens.c.created_us)
        if subject is not None:
            stmt = stmt.where(api_tokens.c.subject == subject)
        with self._engine.connect() as conn:
            return [TokenInfo(*row) for row in conn.execute(stmt)]

    def revoke(self, token_id: str) -> TokenInfo:
        with self._engine.begin() as conn:
            result = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.token_id == token_id, api_tokens.c.revoked_us.is_(None))
                .values(revoked_us=now_micros())
            )
            if result.rowcount == 0:
                exists = conn.execute(
                    select(api_tokens.c.token_id).where(api_tokens.c.token_id == token_id)
                ).first()
                if exists is None:
                    raise TokenNotFound(f"no token with id {token_id!r}")
        self.invalidate()
        return next(t for t in self.list() if t.token_id == token_id)

    def invalidate(self) -> None:
        """Forget recent checks (after a revocation or a directory change)."""
        with self._lock:
            self._cache.clear()

    def cached(self, token: str) -> str | None:
        """The subject of a recently authenticated token, without touching the database."""
        return self.cached_digest(_digest(token).hex())

    def cached_digest(self, digest: str) -> str | None:
        """Like :meth:`cached`, for a token known by its :func:`token_digest`."""
        try:
            entry = self._cache.get(bytes.fromhex(digest))
        except ValueError:
            return None
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        return None

    def authenticate(self, token: str) -> str | None:
        """The subject a token belongs to, or None if it is unknown or revoked."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 256:
            return None
        return self._lookup(_digest(token))

    def authenticate_digest(self, digest: str) -> str | None:
        """Like :meth:`authenticate`, for a token known by its :func:`token_digest`."""
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            return None
        return self._lookup(raw) if len(raw) == hashlib.sha256().digest_size else None

    def _lookup(self, digest: bytes) -> str | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        with self._engine.connect() as conn:
            row = conn.execute(
                select(api_tokens.c.subject).where(
                    api_tokens.c.token_hash == digest, api_tokens.c.revoked_us.is_(None)
                )
            ).first()
        if row is None:
            return None
        subject: str = row[0]
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (subject, now + self._cache_seconds)
        return subject
