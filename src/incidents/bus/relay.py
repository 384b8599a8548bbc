"""The outbox relay: delivers outbox rows to their destinations, at least once.

Runs as a background thread of every server (and alone in ``incidents worker``). It
claims due rows in batches, hands each batch to its destination, and records the
outcome: delivered rows are marked processed; failed rows are retried after an
exponential backoff with full jitter, and dead-lettered once their attempts run out.
A crash between delivery and marking delivers those rows again: destinations must
tolerate duplicates (the NATS bus does, by message id).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from incidents.bus.destination import Destination, RetryAfter
from incidents.events.timeformat import now_micros
from incidents.store.outbox_store import Failure, OutboxRecord, OutboxStore

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 500
_URL_CREDENTIALS = re.compile(r"(\b[a-zA-Z][\w+.-]*://)([^/\s:@]*)(:[^@\s/]*)?@")
_SECRET_PARAMS = re.compile(r"((?:token|password|secret|key)=)[^&\s]+", re.IGNORECASE)


def describe_error(exc: BaseException) -> str:
    """A one-line description of a delivery error, safe to store and show.

    Credentials in URLs and token-like query parameters are masked, and the text is
    kept short: errors end up in ``incidents admin outbox list``.
    """
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    # user:password@ keeps the user; a bare token@ (NATS) is masked whole.
    text = _URL_CREDENTIALS.sub(lambda m: f"{m[1]}{m[2]}:***@" if m[3] else f"{m[1]}***@", text)
    text = _SECRET_PARAMS.sub(r"\1***", text)
    return text[:MAX_ERROR_CHARS]


def full_jitter(ceiling: float) -> float:
    """A delay drawn uniformly from [0, ceiling]: retries of many rows spread out."""
    return random.uniform(0.0, ceiling)  # noqa: S311 - spreading retries, not security


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed deliveries are retried."""

    max_attempts: int = 10
    base_seconds: float = 1.0
    cap_seconds: float = 300.0
    # Draws the actual delay from the exponential ceiling (full jitter by default).
    jitter: Callable[[float], float] = full_jitter

    def ceiling(self, attempts: int) -> float:
        """The longest wait after the ``attempts``-th failed attempt."""
        return float(min(self.cap_seconds, self.base_seconds * 2 ** max(attempts - 1, 0)))

    def delay_us(self, attempts: int) -> int:
        """The wait before the next attempt, in microseconds."""
        return int(self.jitter(self.ceiling(attempts)) * 1_000_000)


class OutboxRelay:
    """Drains the outbox into its destinations on a background thread."""

    def __init__(
        self,
        store: OutboxStore,
        destinations: Sequence[Destination],
        *,
        retry: RetryPolicy | None = None,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        retention_seconds: float = 86_400.0,
        clock: Callable[[], int] = now_micros,
    ) -> None:
        self._store = store
        self._destinations = {d.name: d for d in destinations}
        self._retry = retry or RetryPolicy()
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._retention_us = int(retention_seconds * 1_000_000)
        self._clock = clock
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._next_purge_us = 0

    @property
    def destinations(self) -> list[str]:
        """The names of the destinations this relay drains."""
        return list(self._destinations)

    def notify(self) -> None:
        """Wake the relay now (called after each commit that may have queued rows)."""
        self._wake.set()

    def run_once(self) -> int:
        """Claim one batch of due rows and deliver it; returns how many rows it held."""
        now = self._clock()
        with self._store.claim(list(self._destinations), now, self._batch_size) as claim:
            if not claim.rows:
                return 0
            delivered: list[int] = []
            failed: list[Failure] = []
            by_destination: dict[str, list[OutboxRecord]] = {}
            for row in claim.rows:
                if not row.event_id:
                    failed.append(self._gone(row))
                    continue
                by_destination.setdefault(row.destination, []).append(row)
            for name, rows in by_destination.items():
                for row, error in zip(rows, self._deliver(name, rows), strict=True):
                    if error is None:
                        delivered.append(row.id)
                    else:
                        failed.append(self._failure(row, error))
            claim.settle(delivered, failed, self._clock())
            return len(claim.rows)

    def drain(self) -> int:
        """Deliver until no row is due; returns how many rows were handled."""
        total = 0
        while handled := self.run_once():
            total += handled
        return total

    def _deliver(self, name: str, rows: list[OutboxRecord]) -> list[BaseException | None]:
        try:
            results: list[BaseException | None] = list(self._destinations[name].deliver(rows))
        except Exception as exc:
            return [exc] * len(rows)
        if len(results) != len(rows):
            error = RuntimeError(f"destination {name} answered {len(results)} of {len(rows)}")
            return [error] * len(rows)
        return results

    def _failure(self, row: OutboxRecord, error: BaseException) -> Failure:
        attempts = row.attempts + 1
        now = self._clock()
        text = describe_error(error)
        if attempts >= self._retry.max_attempts:
            log.warning(
                "outbox row %d (%s) dead-lettered after %d attempts: %s",
                row.id,
                row.destination,
                attempts,
                text,
            )
            return Failure(row.id, attempts, text, now, now)
        delay = self._retry.delay_us(attempts)
        if isinstance(error, RetryAfter):
            # The far side said when to come back: never sooner, plus a little jitter so
            # that rows told the same moment do not all return together.
            floor = int(error.retry_after_seconds * 1_000_000)
            spread = min(1.0, error.retry_after_seconds / 10)
            delay = floor + int(self._retry.jitter(spread) * 1_000_000)
        return Failure(row.id, attempts, text, now + delay, None)

    def _gone(self, row: OutboxRecord) -> Failure:
        # Nothing left to deliver, and retrying cannot bring it back: dead-letter now.
        now = self._clock()
        text = f"the event at position {row.position} is no longer stored"
        log.warning("outbox row %d (%s) dead-lettered: %s", row.id, row.destination, text)
        return Failure(row.id, row.attempts + 1, text, now, now)

    def start(self) -> None:
        """Start the background thread."""
        with self._lock:
            if self._thread is None:
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
                self._thread.start()

    def stop(self, drain_seconds: float = 0.0) -> None:
        """Stop after the batch in hand (undelivered rows stay for the next relay).

        With ``drain_seconds``, a relay that was running then delivers the rows that
        are due, for at most that long: a server shutting down hands on what it
        committed rather than leave it for another relay's next poll (or its own next
        start). One that never ran delivers nothing: its bus may not be connected.
        """
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join()
        if drain_seconds > 0:
            self._drain_until(time.monotonic() + drain_seconds)

    def _drain_until(self, deadline: float) -> None:
        delivered = 0
        while time.monotonic() < deadline:
            try:
                handled = self.run_once()
            except Exception:
                log.exception("outbox relay: the final drain failed; rows stay queued")
                return
            if not handled:
                break
            delivered += handled
        if delivered:
            log.info("outbox relay: %d rows handled while stopping", delivered)

    def _run(self) -> None:
        while not self._stopping.is_set():
            handled = 0
            try:
                handled = self.run_once()
                self._purge()
            except Exception:
                # The database may be away; try again at the next poll.
                log.exception("outbox relay pass failed")
            if handled >= self._batch_size:
                continue
            self._wake.wait(self._poll_seconds)
            self._wake.clear()

    def _purge(self) -> None:
        now = self._clock()
        if now < self._next_purge_us:
            return
        self._next_purge_us = now + 60_000_000
        removed = self._store.purge(now - self._retention_us)
        if removed:
            log.info("outbox: purged %d delivered rows", removed)
