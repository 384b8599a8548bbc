"""The live feed's invariant, under generated interleavings: every subscriber receives
every matching event after its resume point exactly once, in position order, whatever
the mix of appends, pump runs, reads, slow readers and late subscribers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incidents.log.query import TimelineFilter
from incidents.log.records import StoredEvent
from incidents.timeline import feed as feed_module
from incidents.timeline.feed import LiveFeed, StreamFilter, Subscription

INCIDENTS = ("INC-1", "INC-2", "INC-3")
TYPES = ("im.note.add", "im.incident.escalate")


def _row(position: int, incident: str, type_: str, visibility: str | None) -> StoredEvent:
    values = dict.fromkeys(StoredEvent._fields)
    values.update(
        position=position,
        incident_id=incident,
        type=type_,
        visibility=visibility,
        event_id=f"e{position}",
    )
    return StoredEvent(**values)


@dataclass
class FakeLog:
    """The log as the reader sees it: positions 1..n, all committed."""

    rows: list[StoredEvent] = field(default_factory=list)

    def head_position(self) -> int:
        return len(self.rows)

    def after_position(
        self, position: int, filt: TimelineFilter, limit: int, up_to: int | None = None
    ) -> list[StoredEvent]:
        wanted = StreamFilter(filt.types, filt.incident_id, filt.visibilities)
        out = [
            r
            for r in self.rows[position:]
            if (up_to is None or r.position <= up_to) and wanted.matches(r)
        ]
        return out[:limit]


appends = st.tuples(
    st.just("append"),
    st.lists(
        st.tuples(
            st.sampled_from(INCIDENTS),
            st.sampled_from(TYPES),
            st.sampled_from([None, "restricted"]),
        ),
        min_size=1,
        max_size=6,
    ),
)
steps = st.lists(
    st.one_of(
        appends,
        st.tuples(st.just("pump"), st.none()),
        st.tuples(st.just("read"), st.integers(0, 3)),
        st.tuples(
            st.just("subscribe"),
            st.tuples(
                st.sampled_from([None, *INCIDENTS]),
                st.sampled_from([(), ("im.note.*",)]),
                st.sampled_from([None, frozenset({"public"})]),
                st.one_of(st.none(), st.integers(0, 30)),
            ),
        ),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=steps, queue_limit=st.integers(1, 4), chunk=st.integers(1, 5))
def test_every_subscriber_gets_each_matching_event_once_in_order(
    steps: list[tuple[str, object]], queue_limit: int, chunk: int
) -> None:
    log = FakeLog()

    async def scenario() -> None:
        feed = LiveFeed(log, poll_seconds=60)  # type: ignore[arg-type]
        subs: list[tuple[Subscription, int, list[int]]] = []

        async def read(sub: Subscription, got: list[int]) -> None:
            rows = await sub.next(0.001)
            got.extend(r.position for r in rows or [])

        for kind, arg in steps:
            if kind == "append":
                assert isinstance(arg, list)
                for incident, type_, visibility in arg:
                    log.rows.append(_row(len(log.rows) + 1, incident, type_, visibility))
            elif kind == "pump":
                await feed._drain()
            elif kind == "read" and subs:
                assert isinstance(arg, int)
                sub, _, got = subs[arg % len(subs)]
                await read(sub, got)
            elif kind == "subscribe":
                assert isinstance(arg, tuple)
                incident, types, visibilities, after = arg
                if after is not None:
                    after = min(after, len(log.rows))
                filt = StreamFilter(types, incident, visibilities)
                sub = await feed.subscribe(filt, after)
                start = feed._cursor if after is None else after
                subs.append((sub, start, []))
        # Drain everything: pump and read until nothing moves.
        for _ in range(len(log.rows) + 10):
            await feed._drain()
            for sub, _, got in subs:
                await read(sub, got)
        for sub, start, got in subs:
            expected = [
                r.position for r in log.rows if r.position > start and sub.filter.matches(r)
            ]
            assert got == expected, (sub.filter, start)
        await feed.close()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(feed_module, "QUEUE_LIMIT", queue_limit)
        patch.setattr(feed_module, "CHUNK", chunk)
        asyncio.run(scenario())
