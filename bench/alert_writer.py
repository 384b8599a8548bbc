"""The alert writer alone: correlation and appends in process, without HTTP.

Parses the same Alertmanager notifications as ``bench/alerts.py`` once, up front,
then submits them to the container's writer (``IncidentService.ingest``) with a fixed
number of deliveries in flight and reports alerts/s. Separates the writer thread's
work (correlation, projections, the outbox, PostgreSQL) from the HTTP server's, so a
change to either can be judged on its own.

    .venv/bin/python bench/alert_writer.py --alerts 50000
    .venv/bin/python bench/alert_writer.py --alerts 50000 --profile /tmp/writer.prof
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from alerts import notification
from benchlib import (
    chunks,
    cpu_snapshot,
    drop_pg_database,
    log,
    machine,
    recreate_pg_database,
)
from incidents.app import build_container, tune_runtime
from incidents.config import load_settings
from incidents.integrations.alertmanager import inbound as alertmanager
from incidents.integrations.credentials import Integration


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/bench_alert_writer"
    )
    parser.add_argument("--alerts", type=int, default=50_000)
    parser.add_argument("--per-webhook", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=4, help="deliveries queued at once")
    parser.add_argument("--fingerprints", type=int, default=200)
    parser.add_argument("--outbox", default="bus", help="IM_OUTBOX_DESTINATIONS ('' for none)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--profile", help="write a cProfile of the writer thread to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the warm-up and the measured phase; print the result as JSON."""
    args = parse_args(argv)
    recreate_pg_database(args.database_url)
    os.environ["IM_DATABASE_URL"] = args.database_url
    os.environ["IM_OUTBOX_DESTINATIONS"] = args.outbox
    integration = Integration("alertmanager", "bench", ("unused",))
    run = f"w{int(time.time())}"

    def deliveries(prefix: str, count: int) -> list[list[Any]]:
        return [
            alertmanager.alerts_from_payload(
                notification(prefix, batch, args.fingerprints), integration
            )
            for batch in chunks(list(range(count)), args.per_webhook)
        ]

    warmup = deliveries(f"{run}w", 2 * args.per_webhook)
    measured = deliveries(run, args.alerts)
    container = build_container(load_settings())
    tune_runtime()
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        run_writer = container.appender._run

        def profiled() -> None:
            # cProfile follows only the thread that enables it: the writer's own.
            profiler.enable()
            try:
                run_writer()
            finally:
                profiler.disable()

        container.appender._run = profiled  # type: ignore[method-assign]
    container.start()
    try:
        for alerts in warmup:
            container.incidents.ingest(alerts, integration.recorder).result()
        cpu_before = cpu_snapshot(None)
        started = time.perf_counter()
        pending: deque[Future[Any]] = deque()
        for alerts in measured:
            if len(pending) >= args.in_flight:
                pending.popleft().result()
            pending.append(container.incidents.ingest(alerts, integration.recorder))
        while pending:
            pending.popleft().result()
        seconds = time.perf_counter() - started
        cpu_after = cpu_snapshot(None)
    finally:
        container.close()
        if profiler is not None:
            profiler.dump_stats(args.profile)
        if not args.keep:
            drop_pg_database(args.database_url)
    result = {
        "benchmark": "alert_writer",
        "machine": machine(),
        "alerts": args.alerts,
        "outbox": args.outbox,
        "seconds": round(seconds, 3),
        "alerts_per_second": round(args.alerts / seconds, 1),
        # CPU per alert is steadier than the rate on a shared machine: it does not
        # count the time other tenants take.
        "cpu_us_per_alert": {
            party: round(
                sum(v - cpu_before.get(k, 0.0) for k, v in cpu_after.items() if k[0] == party)
                * 1e6
                / args.alerts,
                1,
            )
            for party in ("client", "postgres", "other")
        },
    }
    log(f"{result['alerts_per_second']} alerts/s")
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
