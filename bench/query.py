"""Query benchmark: timeline page latency (first and deep pages, filtered) and export time.

Builds a store of 1,000,000 events through the server's own write path in-process
(validation, dedupe, positions and hash chains are all real, only HTTP is skipped):

* ``INC-MAIN``: 80 % of the events, so that page 500 (25,000 events in) is deep;
* ``INC-EXPORT``: 10 % (100,000 events with the default size), the export subject;
* the other 10 % spread over 200 small incidents.

Then starts the server as a subprocess and measures, one request at a time over one
keep-alive connection (latency, not throughput):

* ``GET /api/v1/incidents/INC-MAIN/timeline?limit=50``: the first page;
* the 500th page, reached by following ``next_cursor``, requested repeatedly;
* the same two with ``type=im.note.*``;
* ``GET .../INC-EXPORT/timeline/export?format=json`` and ``format=md``: time to last byte.

Results are printed as JSON on stdout; progress goes to stderr.

    .venv/bin/python bench/query.py --backend postgresql --reuse
    .venv/bin/python bench/query.py --backend sqlite --reuse
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson
import psycopg

from benchlib import (
    HttpConnection,
    Server,
    add_server_arguments,
    cpu_delta,
    cpu_snapshot,
    drop_pg_database,
    install_uvloop,
    latency_summary,
    log,
    machine,
    make_event,
    pg_database_exists,
    recreate_pg_database,
)
from incidents.app import build_container
from incidents.config import load_settings
from incidents.events.envelope import Event, normalize
from incidents.log.session import AppendResult, Outcome
from incidents.policy.model import ATTRIBUTES

BASE_TIME_US = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z
MAIN = "INC-MAIN"
EXPORT = "INC-EXPORT"
SMALL_INCIDENTS = 200
RECORDED_BY = "bench@example.com"
DEEP_PAGE = 500
# Share of events that are restricted, and again that carry personal data.
SENSITIVE_SHARE = 0.1
# Every data-access attribute the policy knows: the all-access reader.
ALL_ACCESS = ATTRIBUTES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(
        parser,
        "postgresql://postgres@127.0.0.1:5432/bench_query, or sqlite:////tmp/bench-query/bench.db",
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the store")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the built store afterwards and reuse it if it already holds --events",
    )
    parser.add_argument("--chunk", type=int, default=10_000, help="events per append when building")
    parser.add_argument("--samples", type=int, default=1000, help="timed requests per query")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests per query")
    parser.add_argument("--limit", type=int, default=50, help="page size")
    parser.add_argument("--export-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    if args.database_url is None:
        args.database_url = (
            "postgresql://postgres@127.0.0.1:5432/bench_query"
            if args.backend == "postgresql"
            else "sqlite:////tmp/bench-query/bench.db"
        )
    return args


def incident_of(seq: int) -> str:
    """Deterministic layout, interleaved in time as a busy log would be."""
    slot = seq % 10
    if slot == 0:
        return f"INC-{(seq // 10) % SMALL_INCIDENTS + 1}"
    if slot == 1:
        return EXPORT
    return MAIN


def expected_counts(total: int) -> dict[str, int]:
    """How many events each of the two large incidents holds in a store of ``total``."""
    return {
        MAIN: sum(1 for s in range(total) if s % 10 >= 2),
        EXPORT: sum(1 for s in range(total) if s % 10 == 1),
    }


# --------------------------------------------------------------------------- building


def _sqlite_file(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def store_ready(args: argparse.Namespace) -> bool:
    """Whether the store already holds exactly the layout this run would build."""
    sql = (
        "SELECT chain_key, event_count FROM chain_heads "
        "WHERE chain_key IN ('INC-MAIN', 'INC-EXPORT')"
    )
    try:
        if args.backend == "postgresql":
            if not pg_database_exists(args.database_url):
                return False
            with psycopg.connect(args.database_url) as conn:
                rows = conn.execute(sql).fetchall()
                head = conn.execute("SELECT position FROM log_head").fetchone()
        else:
            if not _sqlite_file(args.database_url).exists():
                return False
            with sqlite3.connect(_sqlite_file(args.database_url)) as conn:
                rows = conn.execute(sql).fetchall()
                head = conn.execute("SELECT position FROM log_head").fetchone()
    except (psycopg.Error, sqlite3.Error):
        return False
    if dict(rows) != expected_counts(args.events) or head is None or head[0] != args.events:
        return False
    # A store built before events carried sensitive data would flatter the policy case.
    probe = "SELECT count(*) FROM timeline_events WHERE visibility = 'restricted'"
    if args.backend == "postgresql":
        with psycopg.connect(args.database_url) as conn:
            restricted = conn.execute(probe).fetchone()
    else:
        with sqlite3.connect(_sqlite_file(args.database_url)) as conn:
            restricted = conn.execute(probe).fetchone()
    return restricted is not None and restricted[0] > 0


def reset_store(args: argparse.Namespace) -> None:
    """Start from an empty database."""
    if args.backend == "postgresql":
        recreate_pg_database(args.database_url)
        return
    path = _sqlite_file(args.database_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def event_chunks(total: int, size: int, seed: int) -> Iterator[list[Event]]:
    """Validated events in append order, ``size`` at a time."""
    rng = random.Random(seed)
    for start in range(0, total, size):
        yield [
            normalize(
                make_event(
                    "q",
                    seq,
                    incident_of(seq),
                    BASE_TIME_US + seq * 250_000,
                    rng,
                    sensitive_share=SENSITIVE_SHARE,
                )
            )
            for seq in range(start, min(total, start + size))
        ]


def build_store(args: argparse.Namespace) -> dict[str, Any]:
    """Append ``--events`` events through the server's own write path, in big chunks."""
    settings = load_settings({"IM_DATABASE_URL": args.database_url})
    container = build_container(settings)
    container.start()
    created = 0
    started = time.perf_counter()
    last_report = 0
    pending: Future[list[AppendResult]] | None = None
    try:
        # The next chunk is validated while the writer thread commits the previous one,
        # so the database works in parallel with the Python side.
        for events in event_chunks(args.events, args.chunk, args.seed):
            future = container.timeline.submit(events, RECORDED_BY)
            if pending is not None:
                created += sum(r.outcome is Outcome.CREATED for r in pending.result())
            pending = future
            if created - last_report >= 50_000:
                last_report = created
                rate = created / (time.perf_counter() - started)
                log(f"build: {created:,} / {args.events:,} events ({rate:,.0f}/s)")
        if pending is not None:
            created += sum(r.outcome is Outcome.CREATED for r in pending.result())
    finally:
        container.close()
    seconds = time.perf_counter() - started
    if created != args.events:
        raise SystemExit(f"build stored {created} events, expected {args.events}")
    log(f"build: {created:,} events in {seconds:.1f} s ({created / seconds:,.0f}/s)")
    if args.backend == "postgresql":
        # Autovacuum would analyze the table shortly after such a load anyway; doing it
        # here makes the measured state the same on every run.
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) timeline_events")
    return {
        "events": created,
        "seconds": round(seconds, 1),
        "events_per_second": round(created / seconds),
    }


# --------------------------------------------------------------------------- measuring


def page_path(
    incident: str, limit: int, cursor: str | None = None, types: str | None = None
) -> str:
    """The query path of one timeline page."""
    path = f"/api/v1/incidents/{incident}/timeline?limit={limit}"
    if types:
        path += f"&type={types}"
    if cursor:
        path += f"&cursor={cursor}"
    return path


async def timed_gets(
    conn: HttpConnection, path: str, samples: int, warmup: int, expect: int, server_pid: int
) -> dict[str, Any]:
    """Request ``path`` repeatedly; summarise the latencies of the timed requests."""
    head = conn.request_head("GET", path, None, 0)
    latencies: list[float] = []
    before: dict[tuple[str, int], float] = {}
    started_all = 0.0
    for i in range(warmup + samples):
        if i == warmup:
            before = cpu_snapshot(server_pid)
            started_all = time.perf_counter()
        started = time.perf_counter()
        response = await conn.send(head)
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {response.body[:300]!r}")
        if i == 0 and len(orjson.loads(response.body)["events"]) != expect:
            raise RuntimeError(f"GET {path} did not return {expect} events")
        if i >= warmup:
            latencies.append(elapsed)
    summary: dict[str, Any] = latency_summary(latencies)
    summary["cores_used"] = cpu_delta(
        before, cpu_snapshot(server_pid), time.perf_counter() - started_all
    )
    return summary


async def walk_to(
    conn: HttpConnection, incident: str, limit: int, page: int, types: str | None
) -> tuple[str, float]:
    """Follow ``next_cursor`` from page 1 to ``page``; return that page's path and walk time."""
    path = page_path(incident, limit, None, types)
    started = time.perf_counter()
    for _ in range(page - 1):
        response = await conn.get(path)
        cursor = orjson.loads(response.body)["next_cursor"]
        path = page_path(incident, limit, cursor, types)
    return path, time.perf_counter() - started


async def measure_pages(args: argparse.Namespace, server: Server, token: str) -> dict[str, Any]:
    """Latency of the first and the deep page, with and without a type filter."""
    conn = HttpConnection("127.0.0.1", server.port, token)
    out: dict[str, Any] = {}
    try:
        for label, types in (("all_types", None), ("type_im.note.*", "im.note.*")):
            first = page_path(MAIN, args.limit, None, types)
            log(f"{label}: page 1, {args.samples} requests")
            page1 = await timed_gets(conn, first, args.samples, args.warmup, args.limit, server.pid)
            log(f"{label}: page 1 {page1}")
            deep_path, walk = await walk_to(conn, MAIN, args.limit, DEEP_PAGE, types)
            log(f"{label}: walked to page {DEEP_PAGE} in {walk:.2f} s")
            deep = await timed_gets(
                conn, deep_path, args.samples, args.warmup, args.limit, server.pid
            )
            log(f"{label}: page {DEEP_PAGE} {deep}")
            out[label] = {
                "page_1": page1,
                f"page_{DEEP_PAGE}": deep,
                f"walk_pages_1_to_{DEEP_PAGE}_seconds": round(walk, 2),
                "walk_mean_ms_per_page": round(walk / (DEEP_PAGE - 1) * 1000, 2),
                "deep_vs_first_p50": round(deep["p50_ms"] / page1["p50_ms"], 2),
                "deep_vs_first_p99": round(deep["p99_ms"] / page1["p99_ms"], 2),
            }
        small = page_path("INC-7", args.limit)
        out["small_incident_page_1"] = await timed_gets(
            conn, small, args.samples, args.warmup, args.limit, server.pid
        )
    finally:
        await conn.close()
    return out


async def measure_policy(
    args: argparse.Namespace, server: Server, full_token: str, limited_token: str
) -> dict[str, Any]:
    """The same pages for an all-access reader and for one who needs visibility filtering
    and redaction, measured one after the other in the same run."""
    out: dict[str, Any] = {}
    for label, token in (("all_access", full_token), ("filtered_and_redacted", limited_token)):
        conn = HttpConnection("127.0.0.1", server.port, token)
        try:
            first = page_path(MAIN, args.limit)
            page1 = await timed_gets(conn, first, args.samples, args.warmup, args.limit, server.pid)
            deep_path, _ = await walk_to(conn, MAIN, args.limit, DEEP_PAGE, None)
            deep = await timed_gets(
                conn, deep_path, args.samples, args.warmup, args.limit, server.pid
            )
        finally:
            await conn.close()
        log(f"policy {label}: page 1 {page1['p50_ms']} ms p50, page {DEEP_PAGE} {deep['p50_ms']}")
        out[label] = {"page_1": page1, f"page_{DEEP_PAGE}": deep}
    for page in ("page_1", f"page_{DEEP_PAGE}"):
        for stat in ("p50_ms", "p99_ms"):
            out[f"ratio_{page}_{stat[:3]}"] = round(
                out["filtered_and_redacted"][page][stat] / out["all_access"][page][stat], 2
            )
    return out


async def measure_exports(args: argparse.Namespace, server: Server, token: str) -> dict[str, Any]:
    """Time to the last byte of full JSON and Markdown exports of ``INC-EXPORT``."""
    expected = expected_counts(args.events)[EXPORT]
    out: dict[str, Any] = {"events": expected}
    for fmt in ("json", "md"):
        runs: list[float] = []
        size = 0
        for _ in range(args.export_repeats):
            conn = HttpConnection("127.0.0.1", server.port, token)
            before = cpu_snapshot(server.pid)
            started = time.perf_counter()
            response = await conn.get(
                f"/api/v1/incidents/{EXPORT}/timeline/export?format={fmt}", sink=True
            )
            runs.append(time.perf_counter() - started)
            cores = cpu_delta(before, cpu_snapshot(server.pid), runs[-1])
            await conn.close()
            if response.status != 200 or int(response.headers["x-event-count"]) != expected:
                raise RuntimeError(f"export {fmt} answered {response.status} {response.headers}")
            size = int(response.headers["x-bench-body-bytes"])
            log(f"export {fmt}: {runs[-1]:.2f} s, {size / 1e6:.1f} MB, cores {cores}")
        out[fmt] = {
            "seconds": [round(r, 2) for r in runs],
            "best_seconds": round(min(runs), 2),
            "worst_seconds": round(max(runs), 2),
            "bytes": size,
            "events_per_second": round(expected / min(runs)),
            "cores_used_last_run": cores,
        }
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Build (or reuse) the store, measure, and print the results as JSON."""
    args = parse_args(argv)
    install_uvloop()
    results: dict[str, Any] = {
        "benchmark": "query",
        "backend": args.backend,
        "machine": machine(),
        "config": {
            "events": args.events,
            "incidents": {**expected_counts(args.events), "others": SMALL_INCIDENTS},
            "limit": args.limit,
            "samples": args.samples,
            "deep_page": DEEP_PAGE,
        },
    }
    if args.reuse and store_ready(args):
        log(f"reusing the store at {args.database_url}")
        results["build"] = "reused"
    else:
        log(f"building {args.events:,} events at {args.database_url}")
        reset_store(args)
        results["build"] = build_store(args)

    server = Server(args.database_url, env={"IM_WORKERS": str(args.workers)})
    try:
        token = server.create_token()
        server.grant_attributes("bench@example.com", ALL_ACCESS)
        limited = server.create_token("reader@example.com", roles=("timeline.reader",))
        server.start()
        log(f"server pid {server.pid} on {server.base_url}")
        results["pages"] = asyncio.run(measure_pages(args, server, token))
        results["policy"] = asyncio.run(measure_policy(args, server, token, limited))
        results["export"] = asyncio.run(measure_exports(args, server, token))
    finally:
        server.stop()

    pages = results["pages"]
    p99s = [
        pages[label][page]["p99_ms"]
        for label in ("all_types", "type_im.note.*")
        for page in ("page_1", f"page_{DEEP_PAGE}")
    ]
    results["targets_met"] = {
        "p99_under_20ms": max(p99s) < 20,
        "policy_filtered_within_1.5x_all_access": all(
            results["policy"][f"ratio_{page}_p50"] <= 1.5
            for page in ("page_1", f"page_{DEEP_PAGE}")
        ),
        "page_500_within_1.5x_page_1": all(
            pages[label]["deep_vs_first_p50"] <= 1.5 for label in ("all_types", "type_im.note.*")
        ),
        "export_100k_under_5s": all(
            results["export"][fmt]["worst_seconds"] < 5 for fmt in ("json", "md")
        ),
    }
    if not args.reuse:
        if args.backend == "postgresql":
            drop_pg_database(args.database_url)
        else:
            path = _sqlite_file(args.database_url)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
