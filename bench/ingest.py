"""Ingest benchmark: batch and single-event appends over HTTP, against a raw COPY baseline.

Starts the server as a subprocess on a free port, creates an API token with the admin
CLI, and measures in one run:

* batch appends (``application/cloudevents-batch+json``) from several connections;
* replaying batches that are already stored (every event a duplicate; nothing stored);
* single-event appends (``application/cloudevents+json``) from many connections;
* PostgreSQL only: binary ``COPY`` of the same rows, shaped exactly as the server stores
  them, into a scratch copy of ``timeline_events``: the ceiling the HTTP path is held to;
* storage per stored event, indexes included.

Results are printed as JSON on stdout; progress goes to stderr.

    .venv/bin/python bench/ingest.py --backend postgresql --events 100000
    .venv/bin/python bench/ingest.py --backend sqlite --events 100000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
    HttpConnection,
    Server,
    add_server_arguments,
    chunks,
    cpu_delta,
    cpu_snapshot,
    drop_pg_database,
    install_uvloop,
    latency_summary,
    log,
    machine,
    make_event,
    recreate_pg_database,
)
from incidents.events.envelope import normalize
from incidents.log.records import EVENT_COLUMNS, ChainHead, ExistingKey, StoredEvent
from incidents.log.session import PendingEvent, write_group
from incidents.store.postgres_writer import _COPY_TYPES

BATCH_TYPE = "application/cloudevents-batch+json"
SINGLE_TYPE = "application/cloudevents+json"
BASE_TIME_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
RECORDED_BY = "bench@example.com"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(
        parser,
        "postgresql://postgres@127.0.0.1:5432/bench_ingest, or a SQLite file in a temporary "
        "directory",
    )
    parser.add_argument("--events", type=int, default=100_000, help="events for batch ingest")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4, help="connections for batches")
    parser.add_argument("--incidents", type=int, default=300, help="incidents to spread over")
    parser.add_argument(
        "--replay-events", type=int, default=50_000, help="already stored events to re-send"
    )
    parser.add_argument("--single-events", type=int, default=20_000)
    parser.add_argument("--single-concurrency", type=int, default=64)
    parser.add_argument(
        "--keep", action="store_true", help="keep the database afterwards (default: drop it)"
    )
    parser.add_argument(
        "--no-fresh",
        action="store_true",
        help="PostgreSQL: reuse the database as it is instead of recreating it",
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.database_url is None:
        if args.backend == "postgresql":
            args.database_url = "postgresql://postgres@127.0.0.1:5432/bench_ingest"
        else:
            args.database_url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-ingest-')}/bench.db"
    return args


def generate(
    run: str, count: int, incidents: int, rng: random.Random, offset: int = 0
) -> list[dict[str, Any]]:
    """``count`` events spread over ``incidents`` incidents, in time order."""
    return [
        make_event(
            run,
            offset + i,
            f"INC-{rng.randrange(incidents) + 1}",
            BASE_TIME_US + (offset + i) * 1000,
            rng,
        )
        for i in range(count)
    ]


async def post_all(
    server: Server,
    token: str,
    bodies: list[bytes],
    content_type: str,
    concurrency: int,
    path: str = "/api/v1/timeline/events",
) -> tuple[float, list[float], list[tuple[int, bytes]]]:
    """POST every body to ``path`` over ``concurrency`` keep-alive connections.

    Returns the wall time, each request's latency, and (status, response body) pairs.
    """
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(bodies)):
        queue.put_nowait(index)
    latencies: list[float] = []
    responses: list[tuple[int, bytes]] = [(0, b"")] * len(bodies)

    async def worker() -> None:
        conn = HttpConnection("127.0.0.1", server.port, token)
        heads: dict[int, bytes] = {}
        try:
            while True:
                try:
                    index = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                body = bodies[index]
                head = heads.get(len(body))
                if head is None:
                    head = conn.request_head("POST", path, content_type, len(body))
                    heads[len(body)] = head
                started = time.perf_counter()
                response = await conn.send(head, body)
                latencies.append(time.perf_counter() - started)
                responses[index] = (response.status, response.body)
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, responses


def tally_batches(responses: list[tuple[int, bytes]]) -> dict[str, int]:
    """Sum the per-batch counts the server returned; any non-200 counts as an error."""
    totals = {"created": 0, "duplicates": 0, "conflicts": 0, "rejected": 0, "http_errors": 0}
    for status, body in responses:
        if status != 200:
            totals["http_errors"] += 1
            continue
        doc = orjson.loads(body)
        for key in ("created", "duplicates", "conflicts", "rejected"):
            totals[key] += doc[key]
    return totals


def tally_singles(responses: list[tuple[int, bytes]]) -> dict[str, int]:
    """Count single-event outcomes by HTTP status."""
    counts: dict[str, int] = {}
    for status, _ in responses:
        counts[str(status)] = counts.get(str(status), 0) + 1
    return counts


def measure(
    label: str,
    server: Server,
    token: str,
    bodies: list[bytes],
    events: int,
    content_type: str,
    concurrency: int,
    path: str = "/api/v1/timeline/events",
) -> tuple[dict[str, Any], list[tuple[int, bytes]]]:
    """Run one HTTP phase and summarise rate, latency and CPU share."""
    log(f"{label}: {events} events in {len(bodies)} requests over {concurrency} connections")
    before = cpu_snapshot(server.pid)
    wall, latencies, responses = asyncio.run(
        post_all(server, token, bodies, content_type, concurrency, path)
    )
    cores = cpu_delta(before, cpu_snapshot(server.pid), wall)
    result = {
        "events": events,
        "requests": len(bodies),
        "concurrency": concurrency,
        "seconds": round(wall, 3),
        "events_per_second": round(events / wall, 1),
        "request_latency": latency_summary(latencies),
        "cores_used": cores,
    }
    log(f"{label}: {result['events_per_second']:.0f} events/s ({wall:.2f} s), cores {cores}")
    return result, responses


# --------------------------------------------------------------------------- COPY baseline


class _CaptureTransaction:
    """A write transaction that keeps the rows instead of writing them.

    Running the server's own ``write_group`` through it yields rows shaped exactly as
    stored (positions, body encoding, content hash, chain hashes).
    """

    def __init__(self) -> None:
        self.rows: list[StoredEvent] = []
        self._heads: dict[str, ChainHead] = {}
        self._position = 0

    def lock_head(self) -> int:
        return self._position

    def existing(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], ExistingKey]:
        return {}

    def chain_heads(self, keys: Sequence[str]) -> dict[str, ChainHead]:
        return {k: self._heads[k] for k in keys if k in self._heads}

    def insert_events(self, rows: Sequence[StoredEvent]) -> None:
        self.rows.extend(rows)

    def save_chain_heads(self, heads: dict[str, ChainHead]) -> None:
        self._heads.update(heads)

    def set_head(self, position: int) -> None:
        self._position = position


def stored_rows(events: list[dict[str, Any]]) -> list[StoredEvent]:
    """The rows the server would store for ``events``."""
    tx = _CaptureTransaction()
    pending = [PendingEvent(normalize(e), RECORDED_BY) for e in events]
    for group in chunks(pending, 10_000):
        write_group(tx, group)
    return tx.rows


def copy_baseline(url: str, rows: list[StoredEvent], batch_size: int) -> dict[str, Any]:
    """Binary COPY of ``rows`` into an empty scratch copy of the table, one commit per batch."""
    scratch = "bench_copy_baseline"
    copy_sql = f"COPY {scratch} ({', '.join(EVENT_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {scratch}")
        # LIKE copies columns and indexes but not triggers: no append-only trigger here.
        conn.execute(f"CREATE TABLE {scratch} (LIKE timeline_events INCLUDING ALL)")
        log(f"COPY baseline: {len(rows)} rows in batches of {batch_size}, one connection")
        before = cpu_snapshot(None)
        started = time.perf_counter()
        for batch in chunks(rows, batch_size):
            with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                # The server's own COPY column types: the baseline writes identical rows.
                copy.set_types(_COPY_TYPES)
                for row in batch:
                    copy.write_row(row)
        wall = time.perf_counter() - started
        cores = cpu_delta(before, cpu_snapshot(None), wall)
        size = conn.execute("SELECT pg_total_relation_size(%s)", (scratch,)).fetchone()
        assert size is not None
        conn.execute(f"DROP TABLE {scratch}")
    result = {
        "events": len(rows),
        "batch_size": batch_size,
        "seconds": round(wall, 3),
        "events_per_second": round(len(rows) / wall, 1),
        "bytes_per_event": round(size[0] / len(rows), 1),
        "cores_used": {
            "client_incl_copy": cores["client"],
            "postgres": cores["postgres"],
            "other": cores["other"],
        },
    }
    log(f"COPY baseline: {result['events_per_second']:.0f} events/s ({wall:.2f} s)")
    return result


# --------------------------------------------------------------------------- storage


def stored_count(args: argparse.Namespace) -> int:
    """Rows in ``timeline_events`` right now."""
    if args.backend == "postgresql":
        with psycopg.connect(args.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM timeline_events").fetchone()
    else:
        with sqlite3.connect(sqlite_path(args.database_url)) as conn:
            row = conn.execute("SELECT count(*) FROM timeline_events").fetchone()
    assert row is not None
    return int(row[0])


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def storage(args: argparse.Namespace) -> dict[str, Any]:
    """Bytes per stored event, indexes and TOAST included."""
    if args.backend == "postgresql":
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*), pg_total_relation_size('timeline_events'), "
                "pg_relation_size('timeline_events'), pg_indexes_size('timeline_events'), "
                "avg(octet_length(body)) FROM timeline_events"
            ).fetchone()
            assert row is not None
            count, total, heap, indexes, body = row
            per_index = conn.execute(
                "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) "
                "FROM pg_index WHERE indrelid = 'timeline_events'::regclass ORDER BY 1"
            ).fetchall()
        return {
            "events": count,
            "total_bytes": total,
            "bytes_per_event": round(total / count, 1),
            "heap_bytes_per_event": round(heap / count, 1),
            "index_bytes_per_event": round(indexes / count, 1),
            "index_bytes_per_event_by_index": {n: round(s / count, 1) for n, s in per_index},
            "avg_body_column_bytes": round(float(body), 1),
        }
    path = sqlite_path(args.database_url)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count = conn.execute("SELECT count(*) FROM timeline_events").fetchone()[0]
    size = path.stat().st_size
    return {"events": count, "file_bytes": size, "bytes_per_event": round(size / count, 1)}


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    """Run every phase and print the results as JSON."""
    args = parse_args(argv)
    install_uvloop()
    rng = random.Random(args.seed)
    run = f"r{int(time.time())}"
    is_pg = args.backend == "postgresql"
    if is_pg and not args.no_fresh:
        log(f"recreating the database of {args.database_url}")
        recreate_pg_database(args.database_url)

    log(f"generating {args.events} batch events and {args.single_events} single events")
    batch_events = generate(f"{run}b", args.events, args.incidents, rng)
    single_events = generate(f"{run}s", args.single_events, args.incidents, rng, args.events)
    warmup_events = generate(f"{run}w", 2 * args.batch_size + 200, args.incidents, rng)
    batch_bodies = [orjson.dumps(b) for b in chunks(batch_events, args.batch_size)]
    single_bodies = [orjson.dumps(e) for e in single_events]
    event_bytes = [len(orjson.dumps(e)) for e in batch_events[:2000]]

    server = Server(args.database_url, env={"IM_WORKERS": str(args.workers)})
    results: dict[str, Any] = {
        "benchmark": "ingest",
        "backend": args.backend,
        "machine": machine(),
        "config": {
            "events": args.events,
            "batch_size": args.batch_size,
            "concurrency": args.concurrency,
            "single_events": args.single_events,
            "single_concurrency": args.single_concurrency,
            "incidents": args.incidents,
            "event_json_bytes_avg": round(sum(event_bytes) / len(event_bytes), 1),
            "event_json_bytes_min_max": [min(event_bytes), max(event_bytes)],
        },
    }
    try:
        token = server.create_token()
        server.start()
        log(f"server pid {server.pid} on {server.base_url}")

        # Warm the server's imports, pools and caches before any clock runs.
        warm = [
            orjson.dumps(b) for b in chunks(warmup_events[: 2 * args.batch_size], args.batch_size)
        ]
        asyncio.run(post_all(server, token, warm, BATCH_TYPE, 2))
        warm_single = [orjson.dumps(e) for e in warmup_events[2 * args.batch_size :]]
        asyncio.run(post_all(server, token, warm_single, SINGLE_TYPE, 8))

        batch, responses = measure(
            "batch ingest",
            server,
            token,
            batch_bodies,
            args.events,
            BATCH_TYPE,
            args.concurrency,
        )
        batch["outcomes"] = tally_batches(responses)
        results["batch_ingest"] = batch

        replay_n = min(args.replay_events, args.events)
        replay_bodies = batch_bodies[: -(-replay_n // args.batch_size)]
        replay_n = min(replay_n, len(replay_bodies) * args.batch_size)
        count_before = stored_count(args)
        replay, responses = measure(
            "replay (all duplicates)",
            server,
            token,
            replay_bodies,
            replay_n,
            BATCH_TYPE,
            args.concurrency,
        )
        replay["outcomes"] = tally_batches(responses)
        replay["rows_added"] = stored_count(args) - count_before
        replay["stored_nothing"] = replay["rows_added"] == 0 and replay["outcomes"]["created"] == 0
        results["replay_duplicates"] = replay

        single, responses = measure(
            "single-event POSTs",
            server,
            token,
            single_bodies,
            args.single_events,
            SINGLE_TYPE,
            args.single_concurrency,
        )
        single["outcomes_by_status"] = tally_singles(responses)
        results["single_event"] = single
    finally:
        server.stop()

    results["storage"] = storage(args)
    if is_pg:
        log("building the baseline rows with the server's own write_group")
        rows = stored_rows(batch_events)
        results["copy_baseline"] = copy_baseline(args.database_url, rows, args.batch_size)
        results["http_batch_vs_copy"] = round(
            results["batch_ingest"]["events_per_second"]
            / results["copy_baseline"]["events_per_second"],
            3,
        )

    targets: dict[str, Any] = {
        "single_event_1500_per_s": results["single_event"]["events_per_second"] >= 1500,
        "replay_stores_nothing": results["replay_duplicates"]["stored_nothing"],
    }
    if is_pg:
        targets["storage_under_1kb_per_event"] = results["storage"]["bytes_per_event"] < 1024
    else:
        targets["sqlite_batch_10000_per_s"] = results["batch_ingest"]["events_per_second"] >= 10_000
    results["targets_met"] = targets

    if not args.keep:
        if is_pg:
            drop_pg_database(args.database_url)
        else:
            path = sqlite_path(args.database_url)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            if path.parent.name.startswith("bench-ingest-"):
                # The temporary directory made for the default URL.
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
