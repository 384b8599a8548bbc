"""Board benchmark: a status board of an incident with 100,000 events, and the console.

Builds one incident (``INC-1``) with ``--events`` events through the server's own
write path in-process (10 % restricted, 10 % with personal data, one status update
every 1,000 events), then measures:

* **board render, in process**: ``BoardService.board`` for every persona, for a reader
  who may see everything and for one whose reads are redacted; p50/p95/p99;
* **the scan baseline, same run**: what a board that is not a projection would do,
  reading the incident's whole timeline once per render (only the event count per
  visibility, the least such a board needs);
* **over HTTP** against ``incidents serve``: ``GET /api/v1/incidents/INC-1/board`` per
  persona, the plain ``GET /api/v1/incidents/INC-1`` as the baseline, and the
  console's incident page ``GET /incidents/INC-1`` (with a session cookie):
  time to first byte and to the last byte.

Results are printed as JSON on stdout; progress goes to stderr.

    .venv/bin/python bench/boards.py --backend sqlite
    .venv/bin/python bench/boards.py --backend postgresql
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from benchlib import (
    Server,
    latency_summary,
    log,
    machine,
    make_event,
    recreate_pg_database,
)
from incidents.app import build_container
from incidents.boards.personas import Persona
from incidents.config import Settings, load_settings
from incidents.events.envelope import normalize
from incidents.identity.directory import GrantKind, PrincipalType
from incidents.incident.commands import Declare
from incidents.log.query import TimelineFilter
from incidents.policy.model import ATTRIBUTES

BASE_TIME_US = 1_765_000_000_000_000
RECORDED_BY = "bench@example.com"
FULL = "full@example.com"
PLAIN = "plain@example.com"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--renders", type=int, default=500, help="renders per persona")
    parser.add_argument("--scans", type=int, default=5, help="baseline full scans")
    parser.add_argument("--requests", type=int, default=300, help="HTTP requests per path")
    parser.add_argument("--seed", type=int, default=14)
    return parser.parse_args(argv)


def database_url(args: argparse.Namespace) -> str:
    if args.database_url:
        return str(args.database_url)
    if args.backend == "postgresql":
        return "postgresql://postgres@127.0.0.1:5432/bench_boards"
    folder = Path(tempfile.mkdtemp(prefix="bench-boards-"))
    return f"sqlite:///{folder / 'incidents.db'}"


def build(url: str, events: int, seed: int) -> dict[str, Any]:
    """One incident with ``events`` events, appended through the real write path."""
    container = build_container(load_settings({"IM_DATABASE_URL": url}))
    container.start()
    rng = random.Random(seed)
    started = time.perf_counter()
    try:
        for email, attributes, clearance in ((FULL, ATTRIBUTES, "secret"), (PLAIN, (), None)):
            user = container.directory.ensure_user(email)
            for role in ("timeline.reader", "timeline.exporter", "incident.commander"):
                container.directory.grant(PrincipalType.USER, user.user_id, GrantKind.ROLE, role)
            for attribute in attributes:
                container.directory.grant(
                    PrincipalType.USER, user.user_id, GrantKind.ATTRIBUTE, attribute
                )
            if clearance:
                container.directory.grant(
                    PrincipalType.USER, user.user_id, GrantKind.CLEARANCE, clearance
                )
        container.incidents.execute(
            Declare(title="Checkout errors", actor=RECORDED_BY, severity="SEV-1", service="web")
        )
        pending = None
        for start in range(0, events - 1, 2000):
            batch = []
            for seq in range(start, min(events - 1, start + 2000)):
                raw = make_event("b", seq, "INC-1", BASE_TIME_US + seq * 1000, rng, 0.3, 0.1)
                if seq % 1000 == 999:
                    raw["type"] = "im.status_update.post"
                    raw["data"] = {"title": "Update", "message": f"update {seq}"}
                batch.append(normalize(raw))
            future = container.timeline.submit(batch, RECORDED_BY)
            if pending is not None:
                pending.result()
            pending = future
        if pending is not None:
            pending.result()
    finally:
        container.close()
    seconds = time.perf_counter() - started
    log(f"build: {events:,} events in {seconds:.1f} s")
    return {"events": events, "seconds": round(seconds, 1)}


def timed(fn: Callable[[], Any], times: int) -> list[float]:
    out = []
    for _ in range(times):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def in_process(url: str, renders: int, scans: int) -> dict[str, Any]:
    """Board renders through the service, and the scan baseline, in this process."""
    container = build_container(Settings(database_url=url))
    boards = container.boards
    assert boards is not None
    results: dict[str, Any] = {}
    try:
        for reader in (FULL, PLAIN):
            decision = container.policy.decide(reader, ())
            for persona in Persona:
                board = boards.board("INC-1", persona, decision)
                assert board is not None
                samples = timed(lambda p=persona, d=decision: boards.board("INC-1", p, d), renders)
                results[f"board {persona.value} ({reader.split('@')[0]} reader)"] = latency_summary(
                    samples
                )
        decision = container.policy.decide(FULL, ())

        def scan() -> None:
            counts: dict[str, int] = {}
            filt = TimelineFilter(incident_id="INC-1", visibilities=decision.visibilities)
            for row in container.reader.iterate(filt):
                key = row.visibility or "public"
                counts[key] = counts.get(key, 0) + 1

        results["baseline: full timeline scan per render"] = latency_summary(timed(scan, scans))
    finally:
        container.close()
    return results


def over_http(url: str, requests: int) -> dict[str, Any]:
    """Board and console latency against ``incidents serve``."""
    server = Server(url, env={"IM_LOG_LEVEL": "warning"})
    server.start()
    results: dict[str, Any] = {}
    try:
        container = build_container(Settings(database_url=url))
        try:
            _, token = container.tokens.create(FULL)
        finally:
            container.close()
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.base_url, timeout=60) as client:

            def get(path: str, **headers: str) -> None:
                response = client.get(path, headers=headers)
                response.raise_for_status()

            paths = {"baseline: GET /api/v1/incidents/INC-1": "/api/v1/incidents/INC-1"}
            for persona in Persona:
                paths[f"GET board?persona={persona.value}"] = (
                    f"/api/v1/incidents/INC-1/board?persona={persona.value}"
                )
            for name, path in paths.items():
                get(path, **auth)
                results[name] = latency_summary(timed(lambda p=path: get(p, **auth), requests))

            cookie = {"Cookie": f"im_console={token}"}
            first: list[float] = []
            whole: list[float] = []
            for _ in range(requests):
                started = time.perf_counter()
                with client.stream("GET", "/incidents/INC-1", headers=cookie) as response:
                    assert response.status_code == 200
                    chunks = response.iter_raw()
                    next(chunks)
                    first.append(time.perf_counter() - started)
                    for _chunk in chunks:
                        pass
                    whole.append(time.perf_counter() - started)
            results["console GET /incidents/INC-1: time to first byte"] = latency_summary(first)
            results["console GET /incidents/INC-1: time to last byte"] = latency_summary(whole)
    finally:
        server.stop()
    return results


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    url = database_url(args)
    if args.backend == "postgresql":
        recreate_pg_database(url)
    report: dict[str, Any] = {
        "benchmark": "boards",
        "backend": args.backend,
        "machine": machine(),
        "build": build(url, args.events, args.seed),
    }
    log("rendering boards in process")
    report["in_process"] = in_process(url, args.renders, args.scans)
    log("measuring over HTTP")
    report["http"] = over_http(url, args.requests)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
