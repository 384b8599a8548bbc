"""Reads that see archived incidents as if their events were still in the timeline.

An archived incident's events live in compressed chunks (``archived_events``). Every
read of one incident (pages, counts, exports, the chain walked by verify) merges them
with whatever is still in ``timeline_events`` (a legal-hold event placed after the
archive, say), filtered and ordered exactly as the SQL does for live events.
Decoded chunks are kept in a small cache, checked against a small query on every read
(the number of chunks and when the last was written), so an archive changed or purged
by another process is never served stale.
"""

from __future__ import annotations

import heapq
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator

from sqlalchemy import Engine, func, select

from incidents.events.attributes import VISIBILITIES
from incidents.log.query import Cursor, TimelineFilter
from incidents.log.records import StoredEvent
from incidents.retention.archive_codec import decode_chunk
from incidents.store.event_reader import EventReader
from incidents.store.schema import archived_event_ids, archived_events

_a = archived_events.c
_CACHED_INCIDENTS = 8


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    )


def matches(filt: TimelineFilter, row: StoredEvent) -> bool:
    """Whether ``row`` passes ``filt`` (the Python twin of the reader's SQL conditions)."""
    if filt.incident_id is not None and row.incident_id != filt.incident_id:
        return False
    if filt.types and not any(_glob(p).fullmatch(row.type) for p in filt.types):
        return False
    if filt.from_us is not None and row.time_us < filt.from_us:
        return False
    if filt.to_us is not None and row.time_us > filt.to_us:
        return False
    if filt.actor is not None and row.actor != filt.actor:
        return False
    if filt.correlation_key is not None and row.correlation_key != filt.correlation_key:
        return False
    if filt.fingerprint is not None and row.fingerprint != filt.fingerprint:
        return False
    if filt.max_position is not None and row.position > filt.max_position:
        return False
    if filt.visibilities is not None and not filt.visibilities >= VISIBILITIES:
        return (row.visibility or "public") in filt.visibilities
    return True


class ArchiveAwareReader(EventReader):
    """:class:`EventReader` whose incident reads include the incident's archive."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        # incident -> (its archive's signature when decoded, the decoded rows)
        self._cache: OrderedDict[str, tuple[tuple[int, int], list[StoredEvent]]] = OrderedDict()
        self._lock = threading.Lock()

    def forget(self, incident_id: str) -> None:
        """Drop the cached archive of an incident (after it changed)."""
        with self._lock:
            self._cache.pop(incident_id, None)

    def _archived(self, incident_id: str | None) -> list[StoredEvent]:
        if incident_id is None:
            return []
        # A small query first: whether the incident has an archive, and which. Another
        # process may have archived it again or purged it since this one cached it.
        signature_stmt = select(func.count(), func.coalesce(func.max(_a.archived_us), 0)).where(
            _a.incident_id == incident_id
        )
        with self._engine.connect() as conn:
            chunks, archived_us = conn.execute(signature_stmt).one()
        signature = (int(chunks), int(archived_us))
        if not chunks:
            self.forget(incident_id)
            return []
        with self._lock:
            cached = self._cache.get(incident_id)
            if cached is not None and cached[0] == signature:
                self._cache.move_to_end(incident_id)
                return cached[1]
        stmt = select(_a.data).where(_a.incident_id == incident_id).order_by(_a.seq)
        with self._engine.connect() as conn:
            blobs = [bytes(row[0]) for row in conn.execute(stmt)]
        rows = [row for blob in blobs for row in decode_chunk(blob)]
        with self._lock:
            self._cache[incident_id] = (signature, rows)
            while len(self._cache) > _CACHED_INCIDENTS:
                self._cache.popitem(last=False)
        return rows

    def page(self, filt: TimelineFilter, after: Cursor | None, limit: int) -> list[StoredEvent]:
        archived = self._archived(filt.incident_id)
        live = super().page(filt, after, limit)
        if not archived:
            return live
        key = (after.time_us, after.position) if after is not None else None
        picked = [
            row
            for row in archived
            if matches(filt, row)
            and (
                key is None
                or (
                    (row.time_us, row.position) < key
                    if filt.descending
                    else (row.time_us, row.position) > key
                )
            )
        ]
        merged = sorted(
            {row.position: row for row in [*picked, *live]}.values(),
            key=lambda r: (r.time_us, r.position),
            reverse=filt.descending,
        )
        return merged[:limit]

    def count(self, filt: TimelineFilter) -> int:
        archived = self._archived(filt.incident_id)
        return super().count(filt) + sum(1 for row in archived if matches(filt, row))

    def chain(self, incident_id: str | None, chunk: int = 1000) -> Iterator[StoredEvent]:
        yield from self._archived(incident_id)
        yield from super().chain(incident_id, chunk)

    def by_event_id(
        self,
        event_id: str,
        source: str | None = None,
        visibilities: frozenset[str] | None = None,
    ) -> list[StoredEvent]:
        live = super().by_event_id(event_id, source, visibilities)
        stmt = select(archived_event_ids.c.incident_id, archived_event_ids.c.source).where(
            archived_event_ids.c.event_id == event_id
        )
        if source is not None:
            stmt = stmt.where(archived_event_ids.c.source == source)
        with self._engine.connect() as conn:
            holders = list(conn.execute(stmt.limit(10)))
        if not holders:
            return live
        visible = TimelineFilter(visibilities=visibilities)
        found = [
            row
            for incident_id in sorted({h[0] for h in holders})
            for row in self._archived(incident_id)
            if row.event_id == event_id
            and (source is None or row.source == source)
            and matches(visible, row)
        ]
        return sorted([*live, *found], key=lambda r: r.position)[:10]

    def in_position_order(self, up_to: int, chunk: int = 2000) -> Iterator[StoredEvent]:
        """Every event up to ``up_to`` in position order, archived ones included (what a
        projection rebuild folds).

        Archive chunks are decoded only when the walk reaches their first position, so
        memory holds the chunks of incidents that were active at the same time, not the
        whole archive.
        """
        stmt = (
            select(_a.incident_id, _a.seq, _a.first_position)
            .where(_a.first_position <= up_to)
            .order_by(_a.first_position)
        )
        with self._engine.connect() as conn:
            starts = list(conn.execute(stmt))
        live = super().in_position_order(up_to, chunk)
        if not starts:
            yield from live
            return
        pending: list[tuple[int, StoredEvent]] = []
        upcoming = iter(starts)
        start = next(upcoming, None)
        row = next(live, None)
        while True:
            heads = (row.position if row else None, pending[0][0] if pending else None)
            nearest = min((p for p in heads if p is not None), default=None)
            if start is not None and (nearest is None or start.first_position <= nearest):
                data_stmt = select(_a.data).where(
                    _a.incident_id == start.incident_id, _a.seq == start.seq
                )
                with self._engine.connect() as conn:
                    blob = bytes(conn.execute(data_stmt).scalar_one())
                for archived in decode_chunk(blob):
                    if archived.position <= up_to:
                        heapq.heappush(pending, (archived.position, archived))
                start = next(upcoming, None)
                continue
            if nearest is None:
                return
            if row is not None and row.position == nearest:
                yield row
                row = next(live, None)
            else:
                yield heapq.heappop(pending)[1]
