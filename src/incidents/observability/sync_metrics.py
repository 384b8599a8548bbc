"""Prometheus metrics of the ITSM sync (``sync_*``), in the app's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class SyncMetrics:
    """Operations, failures, conflicts and lag per connector."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.operations = Counter(
            "sync_operations",
            "Sync operations by connector and kind (create, push, pull, note, poll)",
            ["connector", "kind"],
            registry=self.registry,
        )
        self.failures = Counter(
            "sync_failures",
            "Sync operations that failed (vendor errors, rate limits, refused writes)",
            ["connector", "kind"],
            registry=self.registry,
        )
        self.conflicts = Counter(
            "sync_conflicts",
            "Conflicts queued for a human decision",
            ["connector", "field"],
            registry=self.registry,
        )
        self.lag_seconds = Histogram(
            "sync_lag_seconds",
            "Time from a ticket's change on the vendor side to its application here",
            ["connector"],
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
