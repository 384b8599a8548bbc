"""Alert ingestion benchmark: Alertmanager webhooks with correlation on, against plain ingest.

Starts the server as a subprocess with an Alertmanager integration configured, and
measures in one run:

* Alertmanager webhook v4 deliveries (``POST /api/v1/ingest/alertmanager``), each
  alert correlated by the default rules: attached to the open incident of its
  fingerprint, or opening one;
* re-delivery of the same notifications (an HA pair of Alertmanagers): every alert
  a dedupe hit, nothing stored;
* the baseline: the same number of events, as CloudEvents batches of the same size
  already addressed to incidents (``POST /api/v1/timeline/events``), so the cost of
  parsing, correlation and the projections shows as the difference.

After the run it checks the accounting: one alert row per alert sent, one incident
per fingerprint, and every alert event stored once.

    .venv/bin/python bench/alerts.py --backend postgresql --alerts 100000
    .venv/bin/python bench/alerts.py --backend sqlite --alerts 50000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import psycopg

from benchlib import (
    Server,
    add_server_arguments,
    chunks,
    drop_pg_database,
    install_uvloop,
    log,
    log_lock_delta,
    log_lock_totals,
    machine,
    recreate_pg_database,
)
from ingest import BATCH_TYPE, generate, measure, post_all, sqlite_path

INGEST_PATH = "/api/v1/ingest/alertmanager"
TOKEN = "bench-alertmanager-token-0123456789abcdef"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(
        parser,
        "postgresql://postgres@127.0.0.1:5432/bench_alerts, or a SQLite file in a temporary "
        "directory",
    )
    parser.add_argument("--alerts", type=int, default=100_000, help="alerts to deliver")
    parser.add_argument(
        "--per-webhook", type=int, default=500, help="alerts per Alertmanager notification"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="connections")
    parser.add_argument(
        "--fingerprints",
        type=int,
        default=200,
        help="distinct (alertname, service) pairs: the incidents correlation should open",
    )
    parser.add_argument("--replay-alerts", type=int, default=50_000)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    if args.database_url is None:
        if args.backend == "postgresql":
            args.database_url = "postgresql://postgres@127.0.0.1:5432/bench_alerts"
        else:
            args.database_url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-alerts-')}/bench.db"
    return args


def _at(seconds: int) -> str:
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"2026-01-01T{hours:02d}:{minutes:02d}:{sec:02d}Z"


def notification(run: str, alerts: list[int], fingerprints: int) -> dict[str, Any]:
    """One Alertmanager webhook (version 4) carrying the alerts numbered ``alerts``.

    Alert ``n`` is its own series (its own instance), firing on the rule and service
    of fingerprint ``n % fingerprints``, so correlation groups it with every other
    alert of that pair.
    """
    entries = []
    for n in alerts:
        group = n % fingerprints
        labels = {
            "alertname": f"HighErrorRate{group // 10}",
            "service": f"svc-{group}",
            "instance": f"{run}-host-{n}:9100",
            "severity": "critical",
            "job": "api",
        }
        entries.append(
            {
                "status": "firing",
                "labels": labels,
                "annotations": {
                    "summary": f"Error rate above 5% on svc-{group}",
                    "description": "5xx responses exceeded the threshold for 5 minutes",
                },
                "startsAt": _at(n % 300),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": f"http://prometheus:9090/graph?g0.expr=errors{{svc={group}}}",
                "fingerprint": f"{run}{n:012x}",
            }
        )
    return {
        "version": "4",
        "groupKey": f'{{}}:{{run="{run}", batch="{alerts[0]}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "incidents",
        "groupLabels": {"run": run},
        "commonLabels": {"severity": "critical", "job": "api"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": entries,
    }


def write_config(directory: Path) -> Path:
    """The server's YAML config: one Alertmanager integration, the default rules."""
    path = directory / "incidents.yaml"
    path.write_text(f"integrations:\n  alertmanager:\n    - name: bench\n      token: {TOKEN}\n")
    return path


def tally(responses: list[tuple[int, bytes]]) -> dict[str, int]:
    """Outcomes the ingest endpoint reported, summed over deliveries."""
    totals: dict[str, int] = {"http_errors": 0}
    for status, body in responses:
        if status not in (200, 202):
            totals["http_errors"] += 1
            continue
        doc = orjson.loads(body)
        for result in doc.get("alerts", []):
            for key in ("outcome", "decision"):
                name = f"{key}:{result.get(key)}"
                totals[name] = totals.get(name, 0) + 1
    return totals


def counts(args: argparse.Namespace) -> dict[str, int]:
    """Rows in the projections and the log, straight from the database."""
    queries = {
        "events": "SELECT count(*) FROM timeline_events",
        "alert_events": "SELECT count(*) FROM timeline_events WHERE type = 'im.alert.trigger'",
        "alerts": "SELECT count(*) FROM alerts",
        "attached_alerts": "SELECT count(*) FROM alerts WHERE incident_id IS NOT NULL",
        "incidents": "SELECT count(*) FROM incidents",
    }
    out: dict[str, int] = {}
    if args.backend == "postgresql":
        with psycopg.connect(args.database_url) as conn:
            for name, sql in queries.items():
                row = conn.execute(sql).fetchone()
                assert row is not None
                out[name] = int(row[0])
    else:
        with sqlite3.connect(sqlite_path(args.database_url)) as conn:
            for name, sql in queries.items():
                out[name] = int(conn.execute(sql).fetchone()[0])
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Run every phase and print the results as JSON."""
    args = parse_args(argv)
    install_uvloop()
    run = f"a{int(time.time())}"
    is_pg = args.backend == "postgresql"
    if is_pg:
        log(f"recreating the database of {args.database_url}")
        recreate_pg_database(args.database_url)
    config = write_config(Path(tempfile.mkdtemp(prefix="bench-alerts-config-")))

    log(f"generating {args.alerts} alerts in notifications of {args.per_webhook}")
    numbers = list(range(args.alerts))
    bodies = [
        orjson.dumps(notification(run, batch, args.fingerprints))
        for batch in chunks(numbers, args.per_webhook)
    ]
    warmup = [
        orjson.dumps(notification(f"{run}w", batch, args.fingerprints))
        for batch in chunks(list(range(2 * args.per_webhook)), args.per_webhook)
    ]
    rng = random.Random(args.seed)
    baseline_events = generate(f"{run}b", args.alerts, args.fingerprints, rng)
    baseline_bodies = [orjson.dumps(b) for b in chunks(baseline_events, args.per_webhook)]

    server = Server(
        args.database_url, env={"IM_WORKERS": str(args.workers), "IM_CONFIG": str(config)}
    )
    results: dict[str, Any] = {
        "benchmark": "alerts",
        "backend": args.backend,
        "machine": machine(),
        "config": {
            "alerts": args.alerts,
            "per_webhook": args.per_webhook,
            "concurrency": args.concurrency,
            "fingerprints": args.fingerprints,
            "alert_json_bytes_avg": round(sum(len(b) for b in bodies) / max(1, args.alerts), 1),
        },
    }
    try:
        token = server.create_token()
        server.start()
        log(f"server pid {server.pid} on {server.base_url}")
        asyncio.run(post_all(server, TOKEN, warmup, "application/json", 2, INGEST_PATH))
        asyncio.run(post_all(server, token, baseline_bodies[:2], BATCH_TYPE, 2))
        before = counts(args)
        lock_before = log_lock_totals(server, args.workers)

        ingest, responses = measure(
            "alertmanager ingest (correlation on)",
            server,
            TOKEN,
            bodies,
            args.alerts,
            "application/json",
            args.concurrency,
            INGEST_PATH,
        )
        ingest["outcomes"] = tally(responses)
        ingest["log_lock"] = log_lock_delta(
            lock_before, log_lock_totals(server, args.workers), ingest["seconds"]
        )
        log(f"log lock: {ingest['log_lock']}")
        after = counts(args)
        added = {name: after[name] - before[name] for name in after}
        ingest["stored"] = added
        ingest["every_alert_accounted_for"] = (
            added["alerts"] == args.alerts and added["alert_events"] == args.alerts
        )
        # The warm-up's alerts share the fingerprints, so they opened the incidents.
        ingest["incidents_total"] = after["incidents"]
        ingest["one_incident_per_fingerprint"] = after["incidents"] == args.fingerprints
        results["alertmanager_ingest"] = ingest

        replay_n = min(args.replay_alerts, args.alerts)
        replay_bodies = bodies[: -(-replay_n // args.per_webhook)]
        replay_n = min(replay_n, len(replay_bodies) * args.per_webhook)
        replay, responses = measure(
            "re-delivery (all duplicates)",
            server,
            TOKEN,
            replay_bodies,
            replay_n,
            "application/json",
            args.concurrency,
            INGEST_PATH,
        )
        replay["outcomes"] = tally(responses)
        replay["events_added"] = counts(args)["events"] - after["events"]
        results["alertmanager_redelivery"] = replay

        baseline, responses = measure(
            "baseline: plain batch ingest of the same count",
            server,
            token,
            baseline_bodies[2:],
            args.alerts - 2 * args.per_webhook,
            BATCH_TYPE,
            args.concurrency,
        )
        results["baseline_batch_ingest"] = baseline
        results["alerts_vs_baseline"] = round(
            ingest["events_per_second"] / baseline["events_per_second"], 3
        )
    finally:
        server.stop()
        if is_pg and not args.keep:
            drop_pg_database(args.database_url)
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
