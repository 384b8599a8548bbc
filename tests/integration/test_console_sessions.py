"""Console session stores, in-process and in the machine's real Redis: the same
behaviour from both, expiry on a driven clock, and what Redis holds."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from incidents.api.cookie_session import COOKIE
from incidents.app import build_container, create_app
from incidents.config import ConfigError, load_settings
from incidents.identity.tokens import token_digest
from incidents.sessions.console import (
    ConsoleSessions,
    IdentityCredential,
    InProcessConsoleSessions,
    SessionLifetime,
    SessionStoreUnavailable,
    SignInAttempt,
    TokenCredential,
    session_key,
)
from incidents.store.redis_console_sessions import RedisConsoleSessions
from tests.conftest import grant_access, make_settings

T = TypeVar("T")
LIFETIME = SessionLifetime(absolute_seconds=1000.0, idle_seconds=100.0)


class Clock:
    """Time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run(call: Callable[[], Awaitable[T]]) -> T:
    async def scenario() -> T:
        return await call()

    return asyncio.run(scenario())


Made = tuple[ConsoleSessions, Clock, str]


@pytest.fixture(params=["in-process", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Made]:
    clock = Clock()
    prefix = f"test-{uuid.uuid4().hex}:"
    if request.param == "in-process":
        yield InProcessConsoleSessions(LIFETIME, clock), clock, ""
        return
    url: str = request.getfixturevalue("redis_url")
    yield RedisConsoleSessions(url, LIFETIME, prefix=prefix, clock=clock), clock, prefix
    plain = redis.Redis.from_url(url)
    for key in plain.scan_iter(match=prefix + "*"):
        plain.delete(key)


def test_a_session_is_found_by_its_id_only(store: Made) -> None:
    sessions, clock, _ = store

    async def scenario() -> Any:
        made = await sessions.create(TokenCredential("ab" * 32))
        other = await sessions.create(IdentityCredential("ada@example.com", ("sre",)))
        return (
            made,
            other,
            await sessions.get(made.session_id),
            await sessions.get(other.session_id),
            await sessions.get(made.session_id + "x"),
            await sessions.get(""),
        )

    made, other, found, found_other, tampered, empty = run(scenario)
    assert made.session_id != other.session_id and len(made.session_id) >= 43
    assert found == made and found.credential == TokenCredential("ab" * 32)
    assert found_other.credential == IdentityCredential("ada@example.com", ("sre",))
    assert found.created_at == clock.now and found.expires_at == clock.now + 1000
    assert tampered is None and empty is None


def test_an_idle_session_ends_and_use_keeps_it_going(store: Made) -> None:
    sessions, clock, _ = store

    async def scenario() -> list[bool]:
        made = await sessions.create(TokenCredential("cd" * 32))
        seen: list[bool] = []
        for step in (90, 90, 90):  # used every 90 s: never idle for 100 s
            clock.advance(step)
            found = await sessions.get(made.session_id)
            seen.append(found is not None)
            if found is not None:
                await sessions.touch(found)
        clock.advance(99)
        seen.append(await sessions.get(made.session_id) is not None)
        clock.advance(1)  # 100 s since the last use
        seen.append(await sessions.get(made.session_id) is not None)
        return seen

    assert run(scenario) == [True, True, True, True, False]


def test_a_session_in_use_still_ends_at_its_absolute_expiry(store: Made) -> None:
    sessions, clock, _ = store

    async def scenario() -> tuple[float, bool]:
        made = await sessions.create(IdentityCredential("ada@example.com", ()))
        last_alive = 0.0
        for _ in range(30):
            clock.advance(50)
            found = await sessions.get(made.session_id)
            if found is None:
                return last_alive, False
            last_alive = clock.now - made.created_at
            await sessions.touch(found)
        return last_alive, True

    assert run(scenario) == (950.0, False)


def test_a_session_ends_by_the_time_it_was_given_if_that_comes_first(store: Made) -> None:
    sessions, clock, _ = store

    async def scenario() -> list[Any]:
        short = await sessions.create(
            IdentityCredential("ada@example.com", ()), ends_by=clock.now + 60
        )
        later = await sessions.create(TokenCredential("ab" * 32), ends_by=clock.now + 5000)
        clock.advance(59)
        seen = [await sessions.get(short.session_id) is not None]
        clock.advance(1)
        seen.append(await sessions.get(short.session_id) is not None)
        seen.append((await sessions.get(later.session_id)) == later)
        return [short.expires_at - short.created_at, later.expires_at - later.created_at, *seen]

    assert run(scenario) == [60.0, 1000.0, True, False, True]


def test_sign_out_ends_the_session_and_a_late_touch_does_not_bring_it_back(store: Made) -> None:
    sessions, clock, _ = store

    async def scenario() -> tuple[Any, Any]:
        made = await sessions.create(TokenCredential("ef" * 32))
        found = await sessions.get(made.session_id)
        assert found is not None
        await sessions.delete(made.session_id)
        clock.advance(60)
        await sessions.touch(found)  # a request that started before the sign-out
        await sessions.delete("never-made")
        return await sessions.get(made.session_id), await sessions.get(made.session_id)

    assert run(scenario) == (None, None)


def test_a_sign_in_attempt_is_taken_once_and_not_after_it_expires(store: Made) -> None:
    sessions, clock, _ = store
    attempt = SignInAttempt("state-1", "nonce-1", "verifier-1", session_key("previous"))

    async def scenario() -> list[Any]:
        await sessions.begin_sign_in("a-1", attempt, 300)
        await sessions.begin_sign_in("a-2", SignInAttempt("s2", "n2", "v2"), 300)
        taken = [await sessions.take_sign_in("a-1"), await sessions.take_sign_in("a-1")]
        clock.advance(301)
        taken.append(await sessions.take_sign_in("a-2"))
        taken.append(await sessions.take_sign_in("unknown"))
        return taken

    assert run(scenario) == [attempt, None, None, None]


def test_anonymous_sign_in_attempts_do_not_pile_up_in_the_process() -> None:
    clock = Clock()
    sessions = InProcessConsoleSessions(LIFETIME, clock, max_pending_sign_ins=100)

    async def scenario() -> list[Any]:
        seen: list[Any] = []
        # Expired attempts are dropped as new ones begin, without any session created.
        for n in range(50):
            await sessions.begin_sign_in(f"old-{n}", SignInAttempt("s", "n", "v"), 300)
        clock.advance(301)
        await sessions.begin_sign_in("fresh", SignInAttempt("s", "n", "v"), 300)
        seen.append(sessions.pending_sign_ins())
        # A flood within the lifetime keeps the newest attempts, up to the limit.
        for n in range(1000):
            await sessions.begin_sign_in(f"flood-{n}", SignInAttempt("s", "n", "v"), 300)
        seen.append(sessions.pending_sign_ins())
        seen.append(await sessions.take_sign_in("fresh"))
        seen.append(await sessions.take_sign_in("flood-999"))
        return seen

    pending_after_expiry, pending_after_flood, oldest, newest = run(scenario)
    assert pending_after_expiry == 1
    assert pending_after_flood == 100
    assert oldest is None and newest == SignInAttempt("s", "n", "v")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(1, 30)), min_size=1, max_size=40))
def test_pending_sign_ins_stay_bounded(steps: list[tuple[int, int]]) -> None:
    """Whatever the pace of anonymous starts, at most the limit is kept, and never more
    than began within the attempts' lifetime."""
    clock = Clock()
    sessions = InProcessConsoleSessions(LIFETIME, clock, max_pending_sign_ins=25)
    began: list[float] = []

    async def scenario() -> None:
        for advance, count in steps:
            clock.advance(advance)
            for _ in range(count):
                await sessions.begin_sign_in(uuid.uuid4().hex, SignInAttempt("s", "n", "v"), 300)
                began.append(clock.now)
            recent = sum(1 for at in began if clock.now - at < 300)
            assert sessions.pending_sign_ins() <= min(25, recent)

    run(scenario)


def test_a_session_can_be_ended_by_its_key(store: Made) -> None:
    sessions, _, _ = store

    async def scenario() -> tuple[Any, Any]:
        ended = await sessions.create(TokenCredential("ab" * 32))
        kept = await sessions.create(TokenCredential("ab" * 32))
        await sessions.delete_keyed(session_key(ended.session_id))
        await sessions.delete_keyed(session_key("never-made"))
        return await sessions.get(ended.session_id), await sessions.get(kept.session_id)

    ended, kept = run(scenario)
    assert ended is None and kept is not None


def test_redis_holds_neither_session_ids_nor_tokens(redis_url: str) -> None:
    prefix = f"test-{uuid.uuid4().hex}:"
    sessions = RedisConsoleSessions(redis_url, LIFETIME, prefix=prefix)
    token = "im_" + uuid.uuid4().hex
    made = run(lambda: sessions.create(TokenCredential(token_digest(token))))
    plain = redis.Redis.from_url(redis_url)
    try:
        keys = list(plain.scan_iter(match=prefix + "*"))
        dump = b"".join(keys) + b"".join(plain.get(k) or b"" for k in keys)
        assert keys == [f"{prefix}s:{session_key(made.session_id)}".encode()]
        assert made.session_id.encode() not in dump and token.encode() not in dump
        # Redis forgets the record when the session would end anyway.
        assert 0 < plain.pttl(keys[0]) <= 100_000
    finally:
        for key in plain.scan_iter(match=prefix + "*"):
            plain.delete(key)


UNREADABLE = [
    b"not json",
    b"[]",
    b'"a string"',
    b'{"credential": {"kind": "saml", "subject": "SECRET-CONTENT"}}',
    b'{"credential": {"kind": "token"}, "created_at": 1}',
    b'{"credential": {"kind": "oidc", "email": "SECRET-CONTENT", "groups": "sre"},'
    b' "created_at": 1, "last_seen": 1, "expires_at": 1e12, "idle_seconds": 60}',
    b'{"credential": {"kind": "token", "digest": "SECRET-CONTENT"},'
    b' "created_at": "x", "last_seen": 1, "expires_at": 1e12, "idle_seconds": 60}',
]


@pytest.mark.parametrize("record", UNREADABLE)
def test_an_unreadable_redis_record_is_no_session_and_is_logged_without_its_content(
    redis_url: str, caplog: pytest.LogCaptureFixture, record: bytes
) -> None:
    prefix = f"test-{uuid.uuid4().hex}:"
    sessions = RedisConsoleSessions(redis_url, LIFETIME, prefix=prefix)
    plain = redis.Redis.from_url(redis_url)
    try:
        plain.set(f"{prefix}s:{session_key('some-session')}", record, px=60_000)
        plain.set(f"{prefix}a:{session_key('some-attempt')}", record, px=60_000)
        with caplog.at_level(logging.WARNING, logger="incidents"):
            found = run(lambda: sessions.get("some-session"))
            taken = run(lambda: sessions.take_sign_in("some-attempt"))
        assert found is None and taken is None
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2 and "cannot be read" in warnings[0]
        assert not any("SECRET-CONTENT" in w or record.decode() in w for w in warnings)
    finally:
        for key in plain.scan_iter(match=prefix + "*"):
            plain.delete(key)


def test_a_browser_with_an_unreadable_session_is_sent_to_sign_in(
    tmp_path: Path, redis_url: str
) -> None:
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    prefix = f"test-{uuid.uuid4().hex}:"
    container, client = _server(database, redis_url, prefix)
    plain = redis.Redis.from_url(redis_url)
    try:
        plain.set(f"{prefix}s:{session_key('x' * 43)}", b"{broken", px=60_000)
        client.cookies.set(COOKIE, "x" * 43)
        page = client.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/sign-in"
        api = client.get("/api/v1/whoami")
        assert api.status_code == 401
        assert api.headers["content-type"].startswith("application/problem+json")
    finally:
        client.__exit__(None, None, None)
        container.close()
        for key in plain.scan_iter(match=prefix + "*"):
            plain.delete(key)


def test_an_unreachable_redis_is_reported_not_taken_for_signed_out() -> None:
    sessions = RedisConsoleSessions("redis://127.0.0.1:1/0", LIFETIME)
    with pytest.raises(SessionStoreUnavailable, match="IM_REDIS_URL"):
        run(lambda: sessions.get("anything"))
    with pytest.raises(SessionStoreUnavailable):
        run(lambda: sessions.create(TokenCredential("00" * 32)))


# --- two servers, one Redis ------------------------------------------------------------

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _server(database: str, redis_url: str, prefix: str) -> Any:
    container = build_container(make_settings(database, redis_url=redis_url))
    lifetime = SessionLifetime(3600, 600)
    container.console_sessions = RedisConsoleSessions(redis_url, lifetime, prefix=prefix)
    client = TestClient(create_app(container), follow_redirects=False)
    client.__enter__()
    return container, client


def test_two_servers_sharing_redis_share_sessions(tmp_path: Path, redis_url: str) -> None:
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    prefix = f"test-{uuid.uuid4().hex}:"
    first_container, first = _server(database, redis_url, prefix)
    second_container, second = _server(database, redis_url, prefix)
    try:
        grant_access(first_container, "ada@example.com")
        _, token = first_container.tokens.create("ada@example.com")
        signed_in = first.post("/sign-in", content=f"token={token}", headers=FORM)
        assert signed_in.status_code == 303
        session_id = first.cookies[COOKIE]
        # Made on the first server, accepted by the second.
        second.cookies.set(COOKIE, session_id)
        page = second.get("/")
        assert page.status_code == 200
        assert second.get("/api/v1/whoami").json()["subject"] == "ada@example.com"
        # Signed out on the second, over on both.
        proof = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
        assert proof is not None
        out = second.post("/sign-out", content=f"csrf={proof.group(1)}", headers=FORM)
        assert out.status_code == 303
        first.cookies.set(COOKIE, session_id)
        assert first.get("/").headers["location"] == "/sign-in"
        assert first.get("/api/v1/whoami").status_code == 401
    finally:
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)
        first_container.close()
        second_container.close()
        plain = redis.Redis.from_url(redis_url)
        for key in plain.scan_iter(match=prefix + "*"):
            plain.delete(key)


def test_a_session_store_outage_answers_503_not_500(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    container, client = _server(database, "redis://127.0.0.1:1/0", "outage:")
    try:
        grant_access(container, "ada@example.com")
        _, token = container.tokens.create("ada@example.com")
        refused = client.post("/sign-in", content=f"token={token}", headers=FORM)
        assert refused.status_code == 503 and "IM_REDIS_URL" in refused.text
        client.cookies.set(COOKIE, "x" * 43)
        api = client.get("/api/v1/whoami")
        assert api.status_code == 503
        assert api.headers["content-type"].startswith("application/problem+json")
        assert client.get("/").status_code == 503
    finally:
        client.__exit__(None, None, None)
        container.close()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"IM_CONSOLE_SESSION_IDLE_SECONDS": "10"}, "IM_CONSOLE_SESSION_IDLE_SECONDS"),
        ({"IM_CONSOLE_SESSION_IDLE_SECONDS": "abc"}, "IM_CONSOLE_SESSION_IDLE_SECONDS"),
        (
            {"IM_CONSOLE_SESSION_IDLE_SECONDS": "3600", "IM_CONSOLE_SESSION_MAX_SECONDS": "600"},
            "IM_CONSOLE_SESSION_MAX_SECONDS",
        ),
        ({"IM_CONSOLE_SESSION_MAX_SECONDS": str(31 * 86400)}, "IM_CONSOLE_SESSION_MAX_SECONDS"),
    ],
)
def test_session_lifetimes_are_checked_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


def test_session_lifetimes_are_read_from_the_environment() -> None:
    settings = load_settings(
        {"IM_CONSOLE_SESSION_IDLE_SECONDS": "900", "IM_CONSOLE_SESSION_MAX_SECONDS": "7200"}
    )
    assert (settings.console_session_idle_seconds, settings.console_session_max_seconds) == (
        900,
        7200,
    )
