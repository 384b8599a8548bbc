"""Console sessions in Redis, shared by every server process.

One key per session, ``<prefix>s:<sha256(session id)>``, holding the record as JSON
with a Redis expiry at the session's end (pushed forward as it is used). Keys are
digests: whoever reads the keys and values cannot present them as cookies. Sign-in
attempts live under ``<prefix>a:<sha256(attempt id)>`` and are taken with GETDEL, so
each can be finished once, on whichever process the browser comes back to.

Unlike the connection registry, a Redis outage is not swallowed here: without the
store nobody can be told apart, so the caller answers 503.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from redis.exceptions import RedisError

from incidents.sessions.console import (
    ConsoleSession,
    Credential,
    SessionClock,
    SessionLifetime,
    SessionStoreUnavailable,
    SignInAttempt,
    UnreadableRecord,
    remaining_ms,
    session_key,
)
from incidents.store.redis_client import PerLoopRedis

log = logging.getLogger("incidents.sessions")


def _unreadable(what: str, exc: Exception) -> None:
    # Left in place, not deleted: it may be a newer server's record during an upgrade,
    # and it expires on its own. Never logged: it may hold a credential's digest.
    log.warning(
        "a %s in Redis cannot be read (%s); treated as absent",
        what,
        exc if isinstance(exc, UnreadableRecord) else "not JSON",
    )


class RedisConsoleSessions:
    """:class:`incidents.sessions.console.ConsoleSessions` on Redis."""

    def __init__(
        self,
        url: str,
        lifetime: SessionLifetime,
        *,
        prefix: str = "incidents:console:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = PerLoopRedis(url)
        self._clock = SessionClock(lifetime, clock)
        self._prefix = prefix

    def _session_key(self, session_id: str) -> str:
        return self._keyed(session_key(session_id))

    def _keyed(self, key: str) -> str:
        return f"{self._prefix}s:{key}"

    def _attempt_key(self, attempt_id: str) -> str:
        return f"{self._prefix}a:{session_key(attempt_id)}"

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self._redis.client(), name)(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise SessionStoreUnavailable(
                f"the console session store (IM_REDIS_URL) cannot be reached: {type(exc).__name__}"
            ) from None

    async def create(
        self, credential: Credential, *, ends_by: float | None = None
    ) -> ConsoleSession:
        session = self._clock.new(credential, ends_by)
        await self._call(
            "set",
            self._session_key(session.session_id),
            orjson.dumps(session.as_record()),
            px=remaining_ms(session.ends_at(), self._clock.now()),
        )
        return session

    async def get(self, session_id: str) -> ConsoleSession | None:
        raw = await self._call("get", self._session_key(session_id))
        if raw is None:
            return None
        try:
            session = ConsoleSession.from_record(session_id, orjson.loads(raw))
        except (orjson.JSONDecodeError, UnreadableRecord) as exc:
            _unreadable("console session", exc)
            return None
        # Redis expires the key too; this check keeps the clock the one of this process.
        if not session.alive(self._clock.now()):
            await self.delete(session_id)
            return None
        return session

    async def touch(self, session: ConsoleSession) -> ConsoleSession:
        seen = self._clock.touched(session)
        if seen is None:
            return session
        # XX: a session signed out meanwhile (on any process) is not brought back.
        await self._call(
            "set",
            self._session_key(session.session_id),
            orjson.dumps(seen.as_record()),
            px=remaining_ms(seen.ends_at(), self._clock.now()),
            xx=True,
        )
        return seen

    async def delete(self, session_id: str) -> None:
        await self.delete_keyed(session_key(session_id))

    async def delete_keyed(self, key: str) -> None:
        await self._call("delete", self._keyed(key))

    async def begin_sign_in(
        self, attempt_id: str, attempt: SignInAttempt, ttl_seconds: float
    ) -> None:
        now = self._clock.now()
        await self._call(
            "set",
            self._attempt_key(attempt_id),
            orjson.dumps(attempt.as_record(now + ttl_seconds)),
            px=remaining_ms(now + ttl_seconds, now),
        )

    async def take_sign_in(self, attempt_id: str) -> SignInAttempt | None:
        raw = await self._call("getdel", self._attempt_key(attempt_id))
        if raw is None:
            return None
        try:
            return SignInAttempt.from_record(orjson.loads(raw), self._clock.now())
        except (orjson.JSONDecodeError, UnreadableRecord) as exc:
            _unreadable("sign-in attempt", exc)
            return None

    async def close(self) -> None:
        await self._redis.close()
