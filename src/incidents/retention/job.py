"""The periodic retention run inside a server process (IM_RETENTION_INTERVAL_SECONDS)."""

from __future__ import annotations

import logging
import threading

from incidents.retention.service import RetentionService

log = logging.getLogger("incidents.retention")


class RetentionJob:
    """Runs retention every ``interval`` seconds on a thread of its own.

    Several servers may run it at once: each step takes the log lock and decides again,
    so an incident is archived or purged once.
    """

    def __init__(self, service: RetentionService, interval: float) -> None:
        self._service = service
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                report = self._service.run()
            except Exception:  # a failed run must not end the job; the next one retries
                log.exception("retention run failed")
                continue
            if report.archived or report.purged or report.unattached_purged:
                log.info(
                    "retention: archived %d incidents, purged %d, purged %d events of no incident",
                    len(report.archived),
                    len(report.purged),
                    sum(s.event_count for s in report.unattached_purged),
                )
