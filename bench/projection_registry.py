"""What the projection registry costs an append.

Two measurements in one run:

- ``dispatch``: the registry's own cost per folded event, isolated: folding into a
  projection that does nothing, through the registry's composite session and
  directly; the best of several repeats of many calls each, which a busy machine
  disturbs least.
- ``append``: whole appends of alert and note events on the in-memory writer, through
  the registry and with the incident projection alone, alternating round by round.

Run: ``.venv/bin/python bench/projection_registry.py [--events N --rounds R]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import orjson

from incidents.app import projections
from incidents.events.envelope import normalize
from incidents.incident.projection import ProjectionSession
from incidents.log.ports import ProjectionFactory
from incidents.log.projections import Projections, ProjectionSpec
from incidents.log.records import StoredEvent
from incidents.log.session import PendingEvent
from incidents.store.memory_writer import MemoryWriter
from incidents.timeline.group_commit import GroupCommitAppender


def _events(count: int, offset: int) -> list[PendingEvent]:
    out = []
    for n in range(offset, offset + count):
        kind = "im.note.add" if n % 2 else "im.alert.trigger"
        out.append(
            PendingEvent(
                normalize(
                    {
                        "specversion": "1.0",
                        "id": f"evt-{n}",
                        "source": "bench://registry",
                        "type": kind,
                        "subject": f"incident/INC-{n % 50 + 1}",
                        "data": {"note": f"note {n}", "alert": {"key": f"a{n % 500}"}},
                    }
                ),
                "bench@example.com",
            )
        )
    return out


def _round(factory: ProjectionFactory, events: list[PendingEvent], batch: int) -> float:
    appender = GroupCommitAppender(MemoryWriter(), projection=factory)
    appender.start()
    try:
        started = time.perf_counter()
        for start in range(0, len(events), batch):
            appender.submit(events[start : start + batch]).result()
        return (time.perf_counter() - started) / len(events)
    finally:
        appender.stop()


class _Nothing:
    def __init__(self, rows: object) -> None:
        pass

    def prepare(self, events: object) -> None:
        pass

    def fold(self, row: object, event: object = None) -> None:
        pass

    def flush(self) -> None:
        pass


def _dispatch_ns(calls: int = 200_000, repeats: int = 9) -> dict[str, float]:
    """Nanoseconds per fold: direct, and through the registry's composite session."""
    row = _row()
    direct = _Nothing(None)
    composite = Projections([ProjectionSpec("nothing", None, _Nothing, ())]).open(None)  # type: ignore[arg-type]
    best: dict[str, float] = {}
    for name, target in (("direct", direct), ("registry", composite)):
        fold = target.fold
        timings = []
        for _ in range(repeats):
            started = time.perf_counter_ns()
            for _ in range(calls):
                fold(row)
            timings.append((time.perf_counter_ns() - started) / calls)
        best[name] = min(timings)
    return best


def _row() -> StoredEvent:
    return StoredEvent(
        1,
        "INC-1",
        "e",
        "s",
        "im.note.add",
        None,
        0,
        None,
        "a",
        "a",
        None,
        None,
        None,
        0,
        b"{}",
        b"",
        None,
        b"",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    variants: dict[str, ProjectionFactory] = {
        "incident projection alone": ProjectionSession,
        "through the registry": projections().open,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        events = _events(args.events, r * args.events)
        order = list(variants.items())
        if r % 2:
            order.reverse()
        for name, factory in order:
            times[name].append(_round(factory, events, args.batch))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    medians = {name: statistics.median(values) * 1e6 for name, values in times.items()}
    dispatch = _dispatch_ns()
    result = {
        "dispatch_ns_per_fold": {k: round(v, 1) for k, v in dispatch.items()},
        "dispatch_overhead_ns_per_event": round(dispatch["registry"] - dispatch["direct"], 1),
        "events_per_round": args.events,
        "rounds": args.rounds,
        "median_us_per_event": {k: round(v, 2) for k, v in medians.items()},
        "us_per_event_by_round": {k: [round(v * 1e6, 1) for v in vs] for k, vs in times.items()},
        "ratio_registry_to_alone": round(
            medians["through the registry"] / medians["incident projection alone"], 3
        ),
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
