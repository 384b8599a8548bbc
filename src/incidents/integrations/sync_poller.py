"""Background polling of every connector: ticket changes in, at each one's interval.

Webhooks (Jira) bring changes sooner; polling is the safety net that catches what a
lost webhook missed, and the only inbound path for ServiceNow.
"""

from __future__ import annotations

import logging
import threading
import time

from incidents.sync.engine import SyncEngine

log = logging.getLogger(__name__)


class SyncPoller:
    """One thread polling each connector in turn when its interval has passed."""

    def __init__(self, engine: SyncEngine) -> None:
        self._engine = engine
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="sync-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            thread.join()

    def _run(self) -> None:
        start = time.monotonic()
        due = dict.fromkeys(self._engine.connectors, 0.0)
        # The first sweep waits a full interval: a restart does not trigger one.
        sweeps = {
            cid: start + b.connector.reconcile_seconds
            for cid, b in self._engine.connectors.items()
            if b.connector.reconcile_seconds > 0
        }
        while not self._stopping.is_set():
            now = time.monotonic()
            for connector_id, at in due.items():
                if at > now or self._stopping.is_set():
                    continue
                bound = self._engine.connectors[connector_id]
                due[connector_id] = now + bound.connector.poll_seconds
                try:
                    self._engine.poll(connector_id)
                except Exception as exc:
                    # Recorded in the poll status (incidents sync status); never the secrets.
                    log.warning("sync poll of %s failed: %s", connector_id, type(exc).__name__)
            for connector_id, at in sweeps.items():
                if at > now or self._stopping.is_set():
                    continue
                bound = self._engine.connectors[connector_id]
                sweeps[connector_id] = now + bound.connector.reconcile_seconds
                try:
                    drift = self._engine.reconcile(connector_id, dry_run=False)
                    if drift:
                        log.info(
                            "sync sweep of %s repaired or queued %d fields",
                            connector_id,
                            len(drift),
                        )
                except Exception as exc:
                    log.warning("sync sweep of %s failed: %s", connector_id, type(exc).__name__)
            wait = max(0.05, min(due.values(), default=1.0) - time.monotonic())
            self._stopping.wait(min(wait, 1.0))
