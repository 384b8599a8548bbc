"""Prometheus metrics with the Timeline guide's names, in a registry owned by the app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from incidents.log.group_stats import GroupStats

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class TimelineMetrics:
    """The timeline's counters and histograms."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.events_total = Counter(
            "timeline_events",
            "Timeline events appended",
            ["type"],
            registry=self.registry,
        )
        self.dedupe_hits_total = Counter(
            "timeline_dedupe_hits",
            "Appends that matched an event already stored under the same dedupe key",
            ["outcome"],
            registry=self.registry,
        )
        self.rejected_total = Counter(
            "timeline_events_rejected",
            "Events refused at validation",
            registry=self.registry,
        )
        self.query_duration_seconds = Histogram(
            "timeline_query_duration_seconds",
            "Latency of timeline page queries",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.export_duration_seconds = Histogram(
            "timeline_export_duration_seconds",
            "Duration of timeline exports",
            ["format"],
            buckets=(*_LATENCY_BUCKETS, 30.0, 60.0, 300.0),
            registry=self.registry,
        )
        self.append_lock_wait_seconds = Histogram(
            "timeline_append_lock_wait_seconds",
            "Time an append transaction waited for the log lock",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.append_lock_held_seconds = Histogram(
            "timeline_append_lock_held_seconds",
            "Time an append transaction held the log lock, up to the end of its commit",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.append_group_events = Histogram(
            "timeline_append_group_events",
            "Events stored by one append transaction (a group commit)",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000),
            registry=self.registry,
        )

    def observe_group(self, stats: GroupStats) -> None:
        """Record one committed append transaction."""
        self.append_lock_wait_seconds.observe(stats.lock_wait_seconds)
        self.append_lock_held_seconds.observe(stats.lock_held_seconds)
        self.append_group_events.observe(stats.events)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
