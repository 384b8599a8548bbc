"""Streams benchmark: many SSE subscribers, append-to-delivery latency, append rate.

Starts the server as a subprocess and measures in one run:

* latency: ``--subscribers`` clients on ``GET /api/v1/events/stream`` (every event),
  while one client appends single events at ``--rate`` per second; for every event
  and subscriber, the time from the start of the append request to the frame's
  arrival (p50, p99, max), and whether every subscriber got every event exactly once;
* append rate while they listen: batch appends spread over ``--incidents`` incidents
  while the same number of subscribers each follow one incident
  (``GET /api/v1/incidents/{id}/stream``), against the same appends with nobody
  listening (the baseline, measured first in the same run).

    .venv/bin/python bench/streams.py --backend postgresql --subscribers 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import orjson

from benchlib import (
    HttpConnection,
    Server,
    add_server_arguments,
    chunks,
    drop_pg_database,
    install_uvloop,
    latency_summary,
    log,
    machine,
    recreate_pg_database,
)
from ingest import BATCH_TYPE, SINGLE_TYPE, generate, measure

READER_ROLES = ("timeline.reader", "timeline.writer")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(
        parser,
        "postgresql://postgres@127.0.0.1:5432/bench_streams, or a SQLite file in a temporary "
        "directory",
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100, help="events in the latency phase")
    parser.add_argument("--rate", type=float, default=10.0, help="appends per second (latency)")
    parser.add_argument("--bulk-events", type=int, default=20_000, help="append-rate phase")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--incidents", type=int, default=100)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    if args.database_url is None:
        if args.backend == "postgresql":
            args.database_url = "postgresql://postgres@127.0.0.1:5432/bench_streams"
        else:
            args.database_url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-streams-')}/bench.db"
    return args


class Subscriber:
    """One SSE client on a raw connection; records when each event id arrives."""

    def __init__(self, port: int, token: str, path: str) -> None:
        self.port = port
        self.token = token
        self.path = path
        self.arrivals: dict[str, float] = {}
        self.repeats = 0
        self.frames = 0
        self.ready = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)
        self._writer = writer
        writer.write(
            f"GET {self.path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {self.token}\r\n\r\n".encode()
        )
        status = await reader.readuntil(b"\r\n")
        if b" 200 " not in status:
            raise RuntimeError(f"stream refused: {status!r}")
        while await reader.readuntil(b"\r\n") != b"\r\n":
            pass
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                if line.startswith(b": connected"):
                    self.ready.set()
                # Chunked transfer framing lines are not "data:" lines; skip them.
                index = line.find(b"data: ")
                if index < 0:
                    continue
                now = time.perf_counter()
                event_id = orjson.loads(line[index + 6 :])["id"]
                self.frames += 1
                if event_id in self.arrivals:
                    self.repeats += 1
                else:
                    self.arrivals[event_id] = now
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


async def _open(subscribers: list[Subscriber]) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(s.run()) for s in subscribers]
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subscribers)), 120)
    return tasks


async def _close(subscribers: list[Subscriber], tasks: list[asyncio.Task[None]]) -> None:
    for s in subscribers:
        s.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def latency_phase(
    server: Server, token: str, args: argparse.Namespace, run: str
) -> dict[str, Any]:
    subscribers = [
        Subscriber(server.port, token, "/api/v1/events/stream") for _ in range(args.subscribers)
    ]
    log(f"latency: connecting {len(subscribers)} subscribers")
    tasks = await _open(subscribers)
    log(f"latency: appending {args.events} events at {args.rate}/s")
    conn = HttpConnection("127.0.0.1", server.port, token)
    sent: dict[str, float] = {}
    append_latencies: list[float] = []
    interval = 1.0 / args.rate
    start = time.perf_counter()
    for n in range(args.events):
        event_id = f"{run}-lat-{n}"
        body = orjson.dumps(
            {
                "specversion": "1.0",
                "id": event_id,
                "source": "//bench/streams",
                "type": "im.note.add",
                "subject": f"incident/INC-{n % 10 + 1}",
                "data": {"text": f"update {n}"},
            }
        )
        head = conn.request_head("POST", "/api/v1/timeline/events", SINGLE_TYPE, len(body))
        sent[event_id] = time.perf_counter()
        response = await conn.send(head, body)
        append_latencies.append(time.perf_counter() - sent[event_id])
        if response.status != 201:
            raise RuntimeError(f"append failed: {response.status} {response.body[:200]!r}")
        await asyncio.sleep(max(0.0, start + (n + 1) * interval - time.perf_counter()))
    await conn.close()
    # Let the last frames arrive (polled: there is no event for "everyone has all").
    for _ in range(100):
        if all(len(s.arrivals) >= len(sent) for s in subscribers):
            break
        await asyncio.sleep(0.1)
    await _close(subscribers, tasks)
    delays = [
        s.arrivals[event_id] - at
        for s in subscribers
        for event_id, at in sent.items()
        if event_id in s.arrivals
    ]
    missing = sum(len(sent) - len(s.arrivals) for s in subscribers)
    return {
        "subscribers": len(subscribers),
        "events": len(sent),
        "rate_per_second": args.rate,
        "deliveries": len(delays),
        "missing_deliveries": missing,
        "duplicate_deliveries": sum(s.repeats for s in subscribers),
        "append_to_delivery": latency_summary(delays),
        "append_request": latency_summary(append_latencies),
    }


async def _with_followers(
    server: Server, token: str, args: argparse.Namespace, bodies: list[bytes], events: int
) -> tuple[dict[str, Any], int]:
    subscribers = [
        Subscriber(server.port, token, f"/api/v1/incidents/INC-{n % args.incidents + 1}/stream")
        for n in range(args.subscribers)
    ]
    log(f"append rate: connecting {len(subscribers)} incident followers")
    tasks = await _open(subscribers)
    loop = asyncio.get_running_loop()
    result, _ = await loop.run_in_executor(
        None,
        lambda: measure(
            "append rate with followers",
            server,
            token,
            bodies,
            events,
            BATCH_TYPE,
            4,
        ),
    )
    await asyncio.sleep(2)
    await _close(subscribers, tasks)
    return result, sum(s.frames for s in subscribers)


def main(argv: Sequence[str] | None = None) -> None:
    """Run every phase and print the results as JSON."""
    args = parse_args(argv)
    install_uvloop()
    run = f"s{int(time.time())}"
    is_pg = args.backend == "postgresql"
    if is_pg:
        log(f"recreating the database of {args.database_url}")
        recreate_pg_database(args.database_url)
    rng = random.Random(args.seed)
    # The incidents must exist before anyone follows them.
    seed_events = generate(f"{run}seed", args.incidents, args.incidents, rng)
    for n, e in enumerate(seed_events):
        e["subject"] = f"incident/INC-{n + 1}"
    baseline = generate(f"{run}base", args.bulk_events, args.incidents, rng)
    listened = generate(f"{run}live", args.bulk_events, args.incidents, rng)
    baseline_bodies = [orjson.dumps(b) for b in chunks(baseline, args.batch_size)]
    listened_bodies = [orjson.dumps(b) for b in chunks(listened, args.batch_size)]

    server = Server(args.database_url, env={"IM_WORKERS": str(args.workers)})
    results: dict[str, Any] = {
        "benchmark": "streams",
        "backend": args.backend,
        "machine": machine(),
        "config": {
            "subscribers": args.subscribers,
            "events": args.events,
            "rate": args.rate,
            "bulk_events": args.bulk_events,
            "batch_size": args.batch_size,
            "incidents": args.incidents,
        },
    }
    try:
        token = server.create_token(roles=READER_ROLES)
        server.start()
        log(f"server pid {server.pid} on {server.base_url}")
        measure("seed", server, token, [orjson.dumps(seed_events)], len(seed_events), BATCH_TYPE, 1)
        results["latency"] = asyncio.run(latency_phase(server, token, args, run))
        log(f"latency: {results['latency']['append_to_delivery']}")
        quiet, _ = measure(
            "append rate, nobody listening",
            server,
            token,
            baseline_bodies,
            args.bulk_events,
            BATCH_TYPE,
            4,
        )
        results["append_rate_baseline"] = quiet
        listening, frames = asyncio.run(
            _with_followers(server, token, args, listened_bodies, args.bulk_events)
        )
        listening["frames_delivered"] = frames
        results["append_rate_with_followers"] = listening
        results["followers_vs_baseline"] = round(
            listening["events_per_second"] / quiet["events_per_second"], 3
        )
    finally:
        server.stop()
        if is_pg:
            drop_pg_database(args.database_url)
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
