"""Retention throughput: archive and purge rates, against the append rate of the same events.

Seeds ``--events`` events over ``--incidents`` incidents straight through the
group-commit appender (no HTTP): half the incidents finished 400 days ago (due for
the archive), half 3,000 days ago (due for purge). The append rate of that seeding is
the baseline, measured in the same run on the same database. Then one retention run
archives the first half and purges the second; each step's time is measured around
the storage call. Finally every incident is verified (archived ones read back from
their compressed chunks, purged ones against their tombstones).

    .venv/bin/python bench/retention.py --backend sqlite --events 1000000
    .venv/bin/python bench/retention.py --backend postgresql --events 1000000

Prints JSON on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import drop_pg_database, log, machine, make_event, recreate_pg_database
from incidents.app import build_container
from incidents.config import Settings
from incidents.events.envelope import normalize
from incidents.events.timeformat import now_micros
from incidents.retention.tiers import DAY_US


class TimedStore:
    """The retention store with the time of each archive and purge call summed."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.archive_seconds = 0.0
        self.archive_events = 0
        self.purge_seconds = 0.0
        self.purge_events = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def archive(self, *args: Any) -> int:
        started = time.perf_counter()
        moved: int = self._inner.archive(*args)
        self.archive_seconds += time.perf_counter() - started
        self.archive_events += moved
        return moved

    def purge(self, *args: Any) -> Any:
        started = time.perf_counter()
        stone = self._inner.purge(*args)
        self.purge_seconds += time.perf_counter() - started
        if stone is not None:
            self.purge_events += stone.event_count
        return stone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="sqlite")
    parser.add_argument("--database-url", help="default: a temp SQLite file or bench_retention")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="bench-retention-")
    if args.backend == "sqlite":
        url = args.database_url or f"sqlite:///{tmp.name}/bench.db"
    else:
        url = args.database_url or "postgresql://postgres@127.0.0.1:5432/bench_retention"
        recreate_pg_database(url)
    settings = Settings(database_url=url, outbox_destinations="")
    container = build_container(settings)
    container.start()
    retention = container.retention
    assert retention is not None
    timed = TimedStore(retention._store)
    retention._store = timed
    rng = random.Random(7)
    now = now_micros()
    per_incident = args.events // args.incidents
    results: dict[str, Any] = {
        "benchmark": "retention",
        "backend": args.backend,
        "events": per_incident * args.incidents,
        "incidents": args.incidents,
        "machine": machine(),
    }
    try:
        log(f"seeding {per_incident * args.incidents} events over {args.incidents} incidents")
        pending = []
        appended = 0
        append_seconds = 0.0
        for k in range(args.incidents):
            age_days = 400 if k % 2 == 0 else 3000
            base = now - age_days * DAY_US - per_incident * 1_000_000
            for seq in range(per_incident):
                raw = make_event("r", k * per_incident + seq, f"INC-{k}", base + seq, rng, 1.0)
                pending.append(normalize(raw))
            if len(pending) >= args.batch_size or k == args.incidents - 1:
                started = time.perf_counter()
                container.timeline.append(pending, "bench@example.com")
                append_seconds += time.perf_counter() - started
                appended += len(pending)
                pending = []
                if k % 100 == 99:
                    log(f"  {appended} appended")
        results["append_events_per_second"] = round(appended / append_seconds)

        log("retention run: archive the 400-day half, purge the 3000-day half")
        started = time.perf_counter()
        report = retention.run(now_us=now)
        run_seconds = time.perf_counter() - started
        results["run_seconds"] = round(run_seconds, 2)
        results["archived_incidents"] = len(report.archived)
        results["purged_incidents"] = len(report.purged)
        results["archive_events"] = timed.archive_events
        results["archive_events_per_second"] = round(timed.archive_events / timed.archive_seconds)
        results["purge_events"] = timed.purge_events
        results["purge_events_per_second"] = round(timed.purge_events / timed.purge_seconds)

        log("verifying every incident")
        started = time.perf_counter()
        verified = 0
        for k in range(args.incidents):
            outcome = container.timeline.verify(f"INC-{k}")
            assert outcome.intact, (k, outcome)
            verified += outcome.events
        verify_seconds = time.perf_counter() - started
        results["verify_seconds"] = round(verify_seconds, 2)
        results["verify_events_per_second"] = round(verified / verify_seconds)
        with container.engine.connect() as conn:
            stored = conn.execute(
                text("SELECT coalesce(sum(length(data)), 0) FROM archived_events")
            )
            results["archive_bytes"] = int(stored.scalar_one())
        results["archive_bytes_per_event"] = round(
            results["archive_bytes"] / max(1, timed.archive_events), 1
        )
    finally:
        container.close()
        if args.backend == "postgresql" and not args.database_url:
            drop_pg_database(url)
        tmp.cleanup()
    sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()
