"""Console sessions: what a signed-in browser's cookie stands for, kept on the server.

The browser holds only a random, opaque session id. The record it names says which
credential the session was made with (an API token, known here by its digest only,
or an identity the OIDC provider vouched for) and when it ends: at an absolute
expiry, or earlier after a stretch without use. Stores key records by a digest of the
session id, so what a store holds (a Redis dump, say) cannot be replayed as cookies.

With IM_REDIS_URL the records live in Redis (:mod:`incidents.store.redis_console_sessions`)
and every server process sees every session; otherwise they live in the process, and
a restart signs everyone out.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

# Sessions are refreshed (last seen moved forward) at most this often: a session in
# use is not rewritten on every request, at the cost of this much idle-expiry slack.
MAX_TOUCH_INTERVAL_SECONDS = 60.0
# Sign-in attempts are begun by anyone, signed in or not: past this many pending in one
# process, the oldest is forgotten (its browser is asked to sign in again).
MAX_PENDING_SIGN_INS = 10_000


class SessionStoreUnavailable(Exception):
    """The session store cannot be reached; nobody can be signed in or checked."""


class UnreadableRecord(ValueError):
    """A stored record is not one this server can read: damaged, or of a kind it does
    not know. The message never repeats the record."""


@dataclass(frozen=True, slots=True)
class TokenCredential:
    """A session made by signing in with an API token: its SHA-256 digest, in hex.

    The token is re-checked through its digest on every use, so revoking it ends the
    session; the token itself is never kept.
    """

    digest: str


@dataclass(frozen=True, slots=True)
class IdentityCredential:
    """A session made from an identity the OIDC provider verified."""

    email: str
    groups: tuple[str, ...]


Credential = TokenCredential | IdentityCredential


@dataclass(frozen=True, slots=True)
class SessionLifetime:
    """How long sessions last: at most ``absolute_seconds`` after sign-in, and no more
    than ``idle_seconds`` after their last use."""

    absolute_seconds: float
    idle_seconds: float

    @property
    def touch_interval(self) -> float:
        return min(MAX_TOUCH_INTERVAL_SECONDS, self.idle_seconds / 10)


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """One signed-in browser."""

    session_id: str
    credential: Credential
    created_at: float
    last_seen: float
    expires_at: float
    idle_seconds: float

    def ends_at(self) -> float:
        """When the session ends unless used again before."""
        return min(self.last_seen + self.idle_seconds, self.expires_at)

    def alive(self, now: float) -> bool:
        return now < self.ends_at()

    def as_record(self) -> dict[str, Any]:
        """The stored form: everything but the session id (stores key by its digest)."""
        credential: dict[str, Any]
        if isinstance(self.credential, TokenCredential):
            credential = {"kind": "token", "digest": self.credential.digest}
        else:
            credential = {
                "kind": "oidc",
                "email": self.credential.email,
                "groups": list(self.credential.groups),
            }
        return {
            "credential": credential,
            "created_at": self.created_at,
            "last_seen": self.last_seen,
            "expires_at": self.expires_at,
            "idle_seconds": self.idle_seconds,
        }

    @classmethod
    def from_record(cls, session_id: str, record: Any) -> ConsoleSession:
        """The session a stored record holds; raises :class:`UnreadableRecord`."""
        try:
            raw = record["credential"]
            credential: Credential
            if raw["kind"] == "token":
                credential = TokenCredential(_text(raw["digest"]))
            elif raw["kind"] == "oidc":
                groups = raw.get("groups") or []
                if not isinstance(groups, list):
                    raise TypeError("groups")
                credential = IdentityCredential(
                    _text(raw["email"]), tuple(_text(group) for group in groups)
                )
            else:
                raise ValueError("credential kind")
            return cls(
                session_id,
                credential,
                float(record["created_at"]),
                float(record["last_seen"]),
                float(record["expires_at"]),
                float(record["idle_seconds"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UnreadableRecord(f"console session record: {type(exc).__name__}") from None


@dataclass(frozen=True, slots=True)
class SignInAttempt:
    """An OIDC sign-in under way: what the callback must find to finish it, and the
    :func:`session_key` of the session the browser had when it began (ended when the
    new one starts; the provider's redirect back does not carry the session cookie)."""

    state: str
    nonce: str
    verifier: str
    replaces: str = ""

    def as_record(self, expires_at: float) -> dict[str, Any]:
        return {
            "state": self.state,
            "nonce": self.nonce,
            "verifier": self.verifier,
            "replaces": self.replaces,
            "expires_at": expires_at,
        }

    @classmethod
    def from_record(cls, record: Any, now: float) -> SignInAttempt | None:
        """The attempt a stored record holds, or None if it expired; raises
        :class:`UnreadableRecord`."""
        try:
            if float(record["expires_at"]) <= now:
                return None
            return cls(
                _text(record["state"]),
                _text(record["nonce"]),
                _text(record["verifier"]),
                _text(record.get("replaces") or ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UnreadableRecord(f"sign-in attempt record: {type(exc).__name__}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def new_session_id() -> str:
    """A fresh session id: 256 random bits."""
    return secrets.token_urlsafe(32)


def session_key(session_id: str) -> str:
    """What stores key a session (or a sign-in attempt) by: a digest of its id."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def remaining_ms(ends_at: float, now: float) -> int:
    """Milliseconds until ``ends_at``, at least 1 (for a store's own expiry)."""
    return max(1, math.ceil((ends_at - now) * 1000))


class ConsoleSessions(Protocol):
    """Where console sessions, and OIDC sign-ins under way, are kept."""

    async def create(
        self, credential: Credential, *, ends_by: float | None = None
    ) -> ConsoleSession:
        """A new session for ``credential``, starting now; it ends at the configured
        absolute expiry, or at ``ends_by`` (epoch seconds) if that comes first."""
        ...

    async def get(self, session_id: str) -> ConsoleSession | None:
        """The session, or None if it is unknown, signed out or expired."""
        ...

    async def touch(self, session: ConsoleSession) -> ConsoleSession:
        """Record a use of the session (pushes its idle expiry forward)."""
        ...

    async def delete(self, session_id: str) -> None:
        """End the session (signing out); unknown ids are ignored."""
        ...

    async def delete_keyed(self, key: str) -> None:
        """End the session stored under ``key``, its :func:`session_key`; unknown keys
        are ignored."""
        ...

    async def begin_sign_in(
        self, attempt_id: str, attempt: SignInAttempt, ttl_seconds: float
    ) -> None:
        """Keep an OIDC sign-in attempt for ``ttl_seconds``."""
        ...

    async def take_sign_in(self, attempt_id: str) -> SignInAttempt | None:
        """The attempt, removed (it can be finished once), or None if unknown or expired."""
        ...

    async def close(self) -> None: ...


class SessionClock:
    """The sessions' timekeeping, shared by the stores: new sessions and touches."""

    def __init__(self, lifetime: SessionLifetime, clock: Callable[[], float]) -> None:
        self.lifetime = lifetime
        self.now = clock

    def new(self, credential: Credential, ends_by: float | None = None) -> ConsoleSession:
        now = self.now()
        expires_at = now + self.lifetime.absolute_seconds
        if ends_by is not None:
            expires_at = min(expires_at, ends_by)
        return ConsoleSession(
            new_session_id(), credential, now, now, expires_at, self.lifetime.idle_seconds
        )

    def touched(self, session: ConsoleSession) -> ConsoleSession | None:
        """The session seen now, or None if no refresh is due yet."""
        now = self.now()
        if now - session.last_seen < self.lifetime.touch_interval:
            return None
        return replace(session, last_seen=now)


class InProcessConsoleSessions:
    """Console sessions in this process's memory.

    Sign-in attempts are kept in the order they began, at most ``max_pending_sign_ins``
    of them: expired ones are dropped as new ones begin, and past the limit the oldest.
    """

    def __init__(
        self,
        lifetime: SessionLifetime,
        clock: Callable[[], float] = time.time,
        *,
        max_pending_sign_ins: int = MAX_PENDING_SIGN_INS,
    ) -> None:
        self._clock = SessionClock(lifetime, clock)
        self._sessions: dict[str, dict[str, Any]] = {}
        self._attempts: dict[str, dict[str, Any]] = {}
        self._max_attempts = max_pending_sign_ins
        self._lock = threading.Lock()
        self._created = 0

    async def create(
        self, credential: Credential, *, ends_by: float | None = None
    ) -> ConsoleSession:
        session = self._clock.new(credential, ends_by)
        with self._lock:
            self._created += 1
            if self._created % 1000 == 0:
                self._sweep()
            self._sessions[session_key(session.session_id)] = session.as_record()
        return session

    def _sweep(self) -> None:
        now = self._clock.now()
        for key, record in list(self._sessions.items()):
            if not ConsoleSession.from_record("", record).alive(now):
                del self._sessions[key]
        for key, record in list(self._attempts.items()):
            if SignInAttempt.from_record(record, now) is None:
                del self._attempts[key]

    async def get(self, session_id: str) -> ConsoleSession | None:
        key = session_key(session_id)
        with self._lock:
            record = self._sessions.get(key)
            if record is None:
                return None
            session = ConsoleSession.from_record(session_id, record)
            if not session.alive(self._clock.now()):
                del self._sessions[key]
                return None
        return session

    async def touch(self, session: ConsoleSession) -> ConsoleSession:
        seen = self._clock.touched(session)
        if seen is None:
            return session
        key = session_key(session.session_id)
        with self._lock:
            # A session signed out meanwhile stays signed out.
            if key in self._sessions:
                self._sessions[key] = seen.as_record()
        return seen

    async def delete(self, session_id: str) -> None:
        await self.delete_keyed(session_key(session_id))

    async def delete_keyed(self, key: str) -> None:
        with self._lock:
            self._sessions.pop(key, None)

    async def begin_sign_in(
        self, attempt_id: str, attempt: SignInAttempt, ttl_seconds: float
    ) -> None:
        now = self._clock.now()
        record = attempt.as_record(now + ttl_seconds)
        with self._lock:
            self._drop_expired_attempts(now)
            while len(self._attempts) >= self._max_attempts:
                del self._attempts[next(iter(self._attempts))]
            self._attempts[session_key(attempt_id)] = record

    def _drop_expired_attempts(self, now: float) -> None:
        """Forget expired attempts, oldest first. Attempts share one lifetime, so the
        oldest expire first: this stops at the first one still pending."""
        while self._attempts:
            key = next(iter(self._attempts))
            if SignInAttempt.from_record(self._attempts[key], now) is not None:
                return
            del self._attempts[key]

    def pending_sign_ins(self) -> int:
        """How many sign-in attempts this process keeps (expired ones not yet dropped)."""
        with self._lock:
            return len(self._attempts)

    async def take_sign_in(self, attempt_id: str) -> SignInAttempt | None:
        with self._lock:
            record = self._attempts.pop(session_key(attempt_id), None)
        return None if record is None else SignInAttempt.from_record(record, self._clock.now())

    async def close(self) -> None:
        return None
