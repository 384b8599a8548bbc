"""Background polling of every connector: ticket changes in, at each one's interval.

Webhooks (Jira) bring changes sooner; polling is the safety net that catches what a
lost webhook missed, and the only inbound path for ServiceNow.

Every server process runs a poller, but each connector is polled by one of them at a
time: the one holding its lease (a row in ``sync_poll_leases``), renewed a few times
per lease period, also from inside a long poll or sweep (before each ticket). When
the holder stops renewing (it stopped, hung or died), another process takes the lease
over once it expires; expiries are set and compared by the database's clock, so the
hosts' clocks need not agree. A poll that finds its lease gone stops, and its cursor
is saved only while the lease is held, so a slow former holder never moves the
cursor back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

from incidents.events.timeformat import now_micros
from incidents.sync.engine import PollLease, PollLeaseLost, SyncEngine

log = logging.getLogger(__name__)

# How long a taken lease lasts; the holder renews it every third of that.
DEFAULT_LEASE_SECONDS = 30.0


def default_holder() -> str:
    """A name for this process's poller: host, process id and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SyncPoller:
    """One thread polling, in turn, each connector whose lease it holds when the
    connector's interval has passed; the periodic drift sweep goes with the lease."""

    def __init__(
        self,
        engine: SyncEngine,
        *,
        holder: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], int] = now_micros,
    ) -> None:
        self._engine = engine
        self.holder = holder or default_holder()
        self._lease_us = int(lease_seconds * 1_000_000)
        self._clock = clock
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._due: dict[str, int] | None = None
        self._sweeps: dict[str, int] = {}
        # Until when our lease runs as last taken, and when to renew or try again.
        self._held_until: dict[str, int] = {}
        self._next_claim: dict[str, int] = {}

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="sync-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop polling and let the leases go, so another process takes them at once."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            thread.join()
        for connector_id in [c for c, until in self._held_until.items() if until > 0]:
            try:
                self._engine.store.release_poll_lease(connector_id, self.holder)
            except Exception as exc:
                log.warning("releasing the poll lease of %s failed: %s", connector_id, exc)
        self._held_until.clear()
        self._next_claim.clear()

    def holds(self, connector_id: str) -> bool:
        """Whether this poller holds the connector's lease (taking or renewing it
        when due)."""
        now = self._clock()
        if now >= self._next_claim.get(connector_id, 0):
            try:
                taken = self._engine.store.take_poll_lease(
                    connector_id, self.holder, self._lease_us
                )
            except Exception as exc:
                log.warning("poll lease of %s: %s", connector_id, type(exc).__name__)
                taken = False
            # Counted from before the database set the expiry, so this process never
            # believes in its lease longer than the database does.
            self._held_until[connector_id] = now + self._lease_us if taken else 0
            self._next_claim[connector_id] = now + self._lease_us // 3
        return self._held_until.get(connector_id, 0) > now

    def _lease(self, connector_id: str) -> PollLease:
        """The lease a poll or sweep of the connector runs under: renewed as it goes."""
        return PollLease(self.holder, lambda: self.holds(connector_id))

    def tick(self) -> float:
        """One pass: poll (and sweep) each connector that is due and whose lease this
        poller holds; returns the seconds until the next one is due."""
        start = self._clock()
        if self._due is None:
            self._due = dict.fromkeys(self._engine.connectors, start)
            # The first sweep waits a full interval: a restart does not trigger one.
            self._sweeps = {
                cid: start + int(b.connector.reconcile_seconds * 1_000_000)
                for cid, b in self._engine.connectors.items()
                if b.connector.reconcile_seconds > 0
            }
        for connector_id in self._due:
            # Renewed whether or not a poll is due, so a lease outlives long intervals.
            self.holds(connector_id)
        for connector_id, at in self._due.items():
            if at > self._clock() or self._stopping.is_set():
                continue
            # Asked right before polling: an earlier connector's poll may have taken
            # longer than what is left of this one's lease.
            if not self.holds(connector_id):
                continue
            bound = self._engine.connectors[connector_id]
            self._due[connector_id] = self._clock() + int(bound.connector.poll_seconds * 1e6)
            try:
                self._engine.poll(connector_id, self._lease(connector_id))
            except PollLeaseLost:
                log.info("sync poll of %s stopped: another process holds its lease", connector_id)
            except Exception as exc:
                # Recorded in the poll status (incidents sync status); never the secrets.
                log.warning("sync poll of %s failed: %s", connector_id, type(exc).__name__)
        for connector_id, at in self._sweeps.items():
            if at > self._clock() or self._stopping.is_set() or not self.holds(connector_id):
                continue
            bound = self._engine.connectors[connector_id]
            self._sweeps[connector_id] = self._clock() + int(
                bound.connector.reconcile_seconds * 1_000_000
            )
            try:
                drift = self._engine.reconcile(
                    connector_id, dry_run=False, lease=self._lease(connector_id)
                )
                if drift:
                    log.info(
                        "sync sweep of %s repaired or queued %d fields", connector_id, len(drift)
                    )
            except PollLeaseLost:
                log.info("sync sweep of %s stopped: another process holds its lease", connector_id)
            except Exception as exc:
                log.warning("sync sweep of %s failed: %s", connector_id, type(exc).__name__)
        now = self._clock()
        wakes = [
            *(at for cid, at in self._due.items() if self._held_until.get(cid, 0) > now),
            *self._next_claim.values(),
        ]
        return max(0.0, (min(wakes, default=now + 1_000_000) - now) / 1e6)

    def _run(self) -> None:
        while not self._stopping.is_set():
            wait = self.tick()
            self._stopping.wait(min(max(wait, 0.05), 1.0))
