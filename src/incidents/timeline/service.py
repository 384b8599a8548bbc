"""The timeline's service layer: what the HTTP API and the CLI ask of the timeline."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from opentelemetry.trace import Span, StatusCode, Tracer

from incidents.events.envelope import Event
from incidents.events.types import TITLES
from incidents.log.chain import ChainReport, ChainSeal, chain_key, verify_to_head
from incidents.log.commands import Command
from incidents.log.ports import EventLog
from incidents.log.query import Cursor, CursorCodec, TimelineFilter
from incidents.log.records import StoredEvent
from incidents.log.session import AppendResult, Outcome, PendingEvent
from incidents.observability.metrics import TimelineMetrics
from incidents.policy.model import Decision
from incidents.timeline.export import ExportFormat, export_json, export_markdown
from incidents.timeline.group_commit import GroupCommitAppender


class NotFound(LookupError):
    """An incident or event that does not exist."""


class AmbiguousEventId(LookupError):
    """Several sources used the same event id; the caller must name the source."""

    def __init__(self, event_id: str, sources: list[str]) -> None:
        self.sources = sources
        super().__init__(
            f"event id {event_id!r} is used by several sources ({', '.join(sources)}); "
            "name the source to pick one (source= in the API, --source in the CLI)"
        )


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a timeline query, and the cursor of the next (None on the last)."""

    events: list[StoredEvent]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Export:
    """An export ready to stream: how many events it holds and the byte chunks."""

    total: int
    chunks: Iterator[bytes]


class TimelineService:
    """Append, query, fetch, verify and export timeline events."""

    def __init__(
        self,
        reader: EventLog,
        appender: GroupCommitAppender,
        cursors: CursorCodec,
        metrics: TimelineMetrics,
        tracer: Tracer,
    ) -> None:
        self._reader = reader
        self._appender = appender
        self._cursors = cursors
        self._metrics = metrics
        self._tracer = tracer
        # Set by the composition root: returns a command for requests that must not be
        # appended as they are (alert events naming no incident go through correlation).
        self.route: Callable[[Sequence[PendingEvent]], Command | None] | None = None
        # Set by the composition root: what signed retention tombstones say about an
        # incident's chain (purged beginning, erased fields), for verify.
        self.seal: Callable[[str], ChainSeal | None] | None = None

    def submit(self, events: Sequence[Event], recorded_by: str) -> Future[list[AppendResult]]:
        """Queue valid events for appending; the future resolves after commit."""
        # The span ends on the writer thread when the group commits, so it is not
        # made current: the request's context must not depend on another thread.
        span = self._tracer.start_span("timeline.append")
        span.set_attribute("timeline.events", len(events))
        pending = [PendingEvent(e, recorded_by) for e in events]
        command = self.route(pending) if self.route is not None else None
        future: Future[list[AppendResult]] = (
            self._appender.submit(pending)
            if command is None
            else self._appender.submit_command(command)
        )
        types = [e.type for e in events]
        future.add_done_callback(lambda done: self._finish(types, span, done))
        return future

    def append(self, events: Sequence[Event], recorded_by: str) -> list[AppendResult]:
        """Append and wait for the results (one per event, in order)."""
        return self.submit(events, recorded_by).result()

    def _finish(self, types: list[str], span: Span, future: Future[list[AppendResult]]) -> None:
        error = future.exception()
        if error is not None:
            span.record_exception(error)
            span.set_status(StatusCode.ERROR)
            span.end()
            return
        span.end()
        created: Counter[str] = Counter()
        for event_type, result in zip(types, future.result(), strict=True):
            if result.outcome is Outcome.CREATED:
                created[event_type] += 1
            else:
                self._metrics.dedupe_hits_total.labels(result.outcome.value).inc()
        for event_type, n in created.items():
            # Types are chosen by clients: label only registered ones, to bound cardinality.
            label = event_type if event_type in TITLES else "other"
            self._metrics.events_total.labels(label).inc(n)

    def record_rejected(self, count: int) -> None:
        """Count events refused at validation (they never reach the writer)."""
        if count:
            self._metrics.rejected_total.inc(count)

    def incident_exists(self, incident_id: str) -> bool:
        return self._reader.chain_head(chain_key(incident_id)) is not None

    def incident_visible(self, incident_id: str, visibilities: frozenset[str] | None) -> bool:
        """Whether the incident has an event the reader may see: an incident whose events
        are all hidden must look exactly like one that does not exist."""
        exists = self.incident_exists(incident_id)
        if exists and visibilities is not None:
            visible = TimelineFilter(incident_id=incident_id, visibilities=visibilities)
            exists = bool(self._reader.page(visible, None, 1))
        return exists

    def _require_incident(
        self, incident_id: str, visibilities: frozenset[str] | None = None
    ) -> None:
        if not self.incident_visible(incident_id, visibilities):
            raise NotFound(f"incident {incident_id!r} has no timeline events")

    def page(self, filt: TimelineFilter, cursor: str | None, limit: int) -> Page:
        """One page of an incident's timeline, and the cursor of the next page."""
        started = time.perf_counter()
        with self._tracer.start_as_current_span("timeline.query") as span:
            span.set_attribute("timeline.incident_id", filt.incident_id or "")
            after = self._cursors.decode(filt, cursor) if cursor else None
            rows = self._reader.page(filt, after, limit + 1)
            # An empty first page needs one more look: no match, or no such incident?
            if not rows and filt.incident_id is not None and after is None:
                self._require_incident(filt.incident_id, filt.visibilities)
            next_cursor = None
            if len(rows) > limit:
                rows = rows[:limit]
                last = rows[-1]
                next_cursor = self._cursors.encode(filt, Cursor(last.time_us, last.position))
            span.set_attribute("timeline.events", len(rows))
        self._metrics.query_duration_seconds.observe(time.perf_counter() - started)
        return Page(rows, next_cursor)

    def get(
        self, event_id: str, source: str | None = None, decision: Decision | None = None
    ) -> StoredEvent:
        """The stored event with CloudEvent id ``event_id``, as ``decision`` lets its
        reader see it; NotFound if none is visible, AmbiguousEventId if several
        sources used the id and no ``source`` was given."""
        # An event the reader may not see does not exist for them.
        rows = self._reader.by_event_id(
            event_id, source, decision.visibilities if decision is not None else None
        )
        if not rows:
            where = f" from source {source!r}" if source else ""
            raise NotFound(f"no event with id {event_id!r}{where}")
        sources = sorted({r.source for r in rows})
        if len(sources) > 1:
            raise AmbiguousEventId(event_id, sources)
        return rows[0]

    def verify(self, incident_id: str) -> ChainReport:
        """Walk an incident's hash chain and say whether it is intact."""
        head = self._reader.chain_head(chain_key(incident_id))
        if head is None:
            raise NotFound(f"incident {incident_id!r} has no timeline events")
        with self._tracer.start_as_current_span("timeline.verify"):
            seal = self.seal(incident_id) if self.seal is not None else None
            return verify_to_head(self._reader.chain(incident_id), head, seal)

    def export(
        self,
        incident_id: str,
        fmt: ExportFormat,
        dialect: str = "spec",
        *,
        decision: Decision | None = None,
        chunk: int = 1000,
    ) -> Export:
        """A streaming export of an incident's timeline as it stands now, as ``decision``
        lets its reader see it."""
        self._require_incident(incident_id, decision.visibilities if decision else None)
        filt = TimelineFilter(
            incident_id=incident_id,
            max_position=self._reader.head_position(),
            visibilities=decision.visibilities if decision is not None else None,
        )
        total = self._reader.count(filt)
        rows = self._reader.iterate(filt, chunk)
        if fmt is ExportFormat.JSON:
            chunks = export_json(rows, dialect, decision)
        else:
            chunks = export_markdown(rows, incident_id, total, decision=decision)
        return Export(total, self._timed(chunks, fmt))

    def _timed(self, chunks: Iterator[bytes], fmt: ExportFormat) -> Iterator[bytes]:
        started = time.perf_counter()
        # A streamed body is produced step by step on pool threads: keep the span detached.
        span = self._tracer.start_span("timeline.export")
        span.set_attribute("timeline.format", fmt.value)
        try:
            yield from chunks
        finally:
            # Also when the client goes away mid-export: the time was spent all the same.
            span.end()
            self._metrics.export_duration_seconds.labels(fmt.value).observe(
                time.perf_counter() - started
            )

    def ping(self) -> None:
        self._reader.ping()
