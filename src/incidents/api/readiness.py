"""Readiness: whether this process can serve, dependency by dependency.

``GET /readyz`` runs one check per dependency (the database, the bus, Redis when
``IM_REDIS_URL`` is set, the policy decision point) and names each one that fails.
Checks run side by side under one deadline, so a dependency that hangs cannot hold
the probe past it or hide the state of the others. A check still running from an
earlier probe is waited on again rather than started anew: a hung dependency ties up
one thread, however often the probe asks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from incidents.bus.relay import describe_error

if TYPE_CHECKING:
    from incidents.app import Container

# A check returns when its dependency answers and raises when it does not.
Check = Callable[[], None]

DEFAULT_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    ok: bool
    # One line, with credentials masked: /readyz answers without authentication.
    error: str | None = None
    duration_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": self.ok}
        if self.error is not None:
            body["error"] = self.error
        if self.duration_ms is not None:
            body["ms"] = round(self.duration_ms, 1)
        return body


class Readiness:
    """Runs named checks concurrently, each at most once at a time."""

    def __init__(
        self, checks: Mapping[str, Check], timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self._checks = dict(checks)
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        self._running: dict[str, Future[float]] = {}
        self._closers: list[Callable[[], None]] = []

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    def on_close(self, closer: Callable[[], None]) -> None:
        """Release something a check holds (a client) when the readiness is closed."""
        self._closers.append(closer)

    def run(self) -> list[CheckResult]:
        """Run every check; each result says whether its dependency answered in time."""
        futures = {name: self._start(name) for name in self._checks}
        wait_futures(futures.values(), timeout=self._timeout)
        return [self._result(name, future) for name, future in futures.items()]

    def _start(self, name: str) -> Future[float]:
        with self._lock:
            running = self._running.get(name)
            if running is not None and not running.done():
                return running
            future: Future[float] = Future()
            self._running[name] = future
        # A daemon thread, not a pool: a check stuck in a connect must not hold up the
        # process when it exits.
        thread = threading.Thread(
            target=self._execute, args=(self._checks[name], future), name=f"readyz-{name}"
        )
        thread.daemon = True
        thread.start()
        return future

    @staticmethod
    def _execute(check: Check, future: Future[float]) -> None:
        started = time.perf_counter()
        try:
            check()
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result((time.perf_counter() - started) * 1000)

    def _result(self, name: str, future: Future[float]) -> CheckResult:
        if not future.done():
            return CheckResult(name, False, f"no answer within {self._timeout:g} s")
        error = future.exception()
        if error is not None:
            return CheckResult(name, False, describe_error(error))
        return CheckResult(name, True, duration_ms=future.result())

    def close(self) -> None:
        for closer in self._closers:
            closer()


@runtime_checkable
class Pingable(Protocol):
    """A dependency adapter that can tell whether its server answers."""

    def ping(self) -> None: ...


def redis_check(url: str, timeout_seconds: float) -> tuple[Check, Callable[[], None]]:
    """A check that Redis at ``url`` answers PING, and how to close its client."""
    import redis

    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout_seconds, socket_timeout=timeout_seconds
    )

    def check() -> None:
        client.ping()

    return check, client.close


def readiness_for(
    container: Container, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> Readiness:
    """The checks of a server process built from ``container``."""

    # Each check looks its adapter up when it runs, not once here, so a replaced
    # adapter (in tests, a patched method) is what gets checked.
    def database() -> None:
        container.reader.ping()

    def bus() -> None:
        # The in-process bus has no server to lose; NATS must answer, with the stream.
        if isinstance(container.bus, Pingable):
            container.bus.ping()

    def policy() -> None:
        container.policy.ping()

    checks: dict[str, Check] = {"database": database, "bus": bus}
    closers = []
    if container.settings.redis_url:
        checks["redis"], close_redis = redis_check(container.settings.redis_url, timeout_seconds)
        closers.append(close_redis)
    checks["policy"] = policy
    readiness = Readiness(checks, timeout_seconds)
    for closer in closers:
        readiness.on_close(closer)
    return readiness
