"""ITSM sync under a burst: linked incidents, internal changes out, external edits in.

Against the local ServiceNow-like Table API of the tests (tests/fakes/servicenow.py):
links ``--incidents`` incidents, then

1. a burst of ``--internal`` incident changes (title/description), delivered by the
   outbox relay: sync lag (commit -> the ticket's next update), vendor writes per
   change, and every ticket equal to its incident afterwards;
2. a burst of ``--external`` ticket edits, taken in by the poller: lag (edit -> applied
   to the incident), events per edit, and every incident equal to its ticket;
3. echo check: another poll and relay pass after both, which must write nothing.

The baseline, measured in the same run, is the naive connector: one vendor write per
change, straight to the same API (no coalescing, no echo suppression).

    .venv/bin/python bench/sync.py --incidents 1000 --internal 10000 --external 10000
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.servicenow import FakeServiceNow

from benchlib import latency_summary, log, machine
from incidents.app import build_container
from incidents.config import Settings
from incidents.identity.directory import GrantKind, PrincipalType
from incidents.incident.commands import Declare, Update

CONNECTOR = "servicenow:prod"
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="", help="default: a temporary SQLite file")
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--internal", type=int, default=10_000)
    parser.add_argument("--external", type=int, default=10_000)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def baseline(
    fake: FakeServiceNow, sys_ids: list[str], changes: int, rng: random.Random
) -> dict[str, Any]:
    """The naive connector: one PATCH per change, in order."""
    client = httpx.Client(base_url=fake.url, auth=(fake.username, fake.password))
    latencies = []
    start = time.perf_counter()
    for i in range(changes):
        sys_id = rng.choice(sys_ids)
        began = time.perf_counter()
        client.patch(f"/api/now/table/incident/{sys_id}", json={"description": f"naive {i}"})
        latencies.append(time.perf_counter() - began)
    elapsed = time.perf_counter() - start
    client.close()
    return {
        "changes": changes,
        "vendor_writes": changes,
        "writes_per_change": 1.0,
        "seconds": round(elapsed, 2),
        "per_write": latency_summary(latencies),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    tmp = tempfile.TemporaryDirectory()
    url = args.database_url or f"sqlite:///{tmp.name}/sync.db"
    fake = FakeServiceNow().start()
    entry = {
        "name": "prod",
        "instance_url": fake.url,
        "username": fake.username,
        "password": fake.password,
        "poll_seconds": args.poll_seconds,
        "overlap_seconds": 2,
    }
    settings = Settings(
        database_url=url,
        sqlite_synchronous="NORMAL",
        connectors={"servicenow": [entry]},
        outbox_poll_seconds=0.05,
        outbox_backoff_base_seconds=0.05,
        outbox_backoff_cap_seconds=0.5,
    )
    container = build_container(settings)
    container.start()
    assert container.sync is not None and container.poller is not None
    container.poller.stop()  # started again for phase 2
    directory = container.directory
    user = directory.ensure_user("servicenow-prod@connectors")
    directory.grant(PrincipalType.USER, user.user_id, GrantKind.ROLE, "incident.reader")
    engine = container.sync
    store = engine.store

    log(f"linking {args.incidents} incidents")
    futures: list[Future[Any]] = [
        container.incidents.submit(
            Declare(title=f"incident {i}", actor="bench@example.com", severity="SEV-3")
        )
        for i in range(args.incidents)
    ]
    ids = [f.result().incident.id for f in futures]
    wait_until(
        lambda: (
            len(store.links(CONNECTOR)) == len(ids)
            and all(not link.creating for link in store.links(CONNECTOR))
        ),
        600,
        "tickets created",
    )
    link_of = {link.incident_id: link for link in store.links(CONNECTOR)}
    sys_ids = [link_of[i].external_id for i in ids]
    creates = len(fake.records)

    # --- phase 1: internal burst -------------------------------------------------
    log(f"internal burst: {args.internal} changes")
    writes_before = fake.writes("PATCH")
    log_start = len(fake.update_log)
    committed: list[tuple[float, str]] = []
    lock = threading.Lock()
    start = time.perf_counter()
    pending: list[tuple[Future[Any], str]] = []
    for i in range(args.internal):
        incident_id = rng.choice(ids)
        field = rng.choice(["title", "description"])
        value = f"{rng.choice(WORDS)} {i}"
        future = container.incidents.submit(
            Update(incident_id, "bench@example.com", None, changes={field: value})
        )

        def done(_f: Future[Any], incident_id: str = incident_id) -> None:
            with lock:
                committed.append((time.monotonic(), incident_id))

        future.add_done_callback(done)
        pending.append((future, incident_id))
    for future, _ in pending:
        future.result()

    def converged_out() -> bool:
        for incident_id in ids[:: max(1, len(ids) // 50)]:
            incident = container.incidents.get(incident_id, None)
            record = fake.records[link_of[incident_id].external_id]
            if incident is None or record["short_description"] != incident.title:
                return False
        return store.status(CONNECTOR).pending == 0

    wait_until(converged_out, 900, "the internal burst to reach the tickets")
    internal_seconds = time.perf_counter() - start
    updates = sorted(fake.update_log[log_start:])
    by_ticket: dict[str, list[float]] = {}
    for at, sys_id in updates:
        by_ticket.setdefault(sys_id, []).append(at)
    lags = []
    for at, incident_id in committed:
        times = by_ticket.get(link_of[incident_id].external_id, [])
        k = bisect.bisect_left(times, at)
        if k < len(times):
            lags.append(times[k] - at)
    internal_writes = fake.writes("PATCH") - writes_before
    lost_out = 0
    for incident_id in ids:
        incident = container.incidents.get(incident_id, None)
        record = fake.records[link_of[incident_id].external_id]
        assert incident is not None
        if record["short_description"] != incident.title or (record["description"] or None) != (
            incident.description or None
        ):
            lost_out += 1

    # --- phase 2: external burst -------------------------------------------------
    log(f"external burst: {args.external} edits")
    edited_at: list[tuple[float, str]] = []
    applied_at: dict[str, float] = {}
    original_inbound = engine.inbound

    def timed_inbound(connector_id: str, ticket: Any, **kw: Any) -> Any:
        outcome = original_inbound(connector_id, ticket, **kw)
        if outcome.pulled:
            applied_at[ticket.external_id] = time.monotonic()
        return outcome

    engine.inbound = timed_inbound  # type: ignore[method-assign]
    events_before = sum(1 for _ in container.reader.in_position_order(10**12))
    container.poller.start()
    start = time.perf_counter()
    last_value: dict[str, str] = {}
    for i in range(args.external):
        sys_id = rng.choice(sys_ids)
        value = f"operator {rng.choice(WORDS)} {i}"
        fake.edit(sys_id, short_description=value)
        last_value[sys_id] = value
        edited_at.append((time.monotonic(), sys_id))
    incident_of = {link_of[i].external_id: i for i in ids}

    def converged_in() -> bool:
        for sys_id, value in list(last_value.items())[:: max(1, len(last_value) // 50)]:
            incident = container.incidents.get(incident_of[sys_id], None)
            if incident is None or incident.title != value:
                return False
        return True

    wait_until(converged_in, 900, "the external burst to reach the incidents")
    time.sleep(args.poll_seconds * 2)
    external_seconds = time.perf_counter() - start
    container.poller.stop()
    in_lags = []
    for at, sys_id in edited_at:
        applied = applied_at.get(sys_id)
        if applied is not None and applied >= at:
            in_lags.append(applied - at)
    lost_in = sum(
        1
        for sys_id, value in last_value.items()
        if getattr(container.incidents.get(incident_of[sys_id], None), "title", None) != value
    )
    events_after = sum(1 for _ in container.reader.in_position_order(10**12))

    # --- phase 3: echo check --------------------------------------------------------
    writes_before_echo = fake.writes()
    engine.poll(CONNECTOR)
    assert container.relay is not None
    time.sleep(0.5)
    wait_until(lambda: store.status(CONNECTOR).pending == 0, 120, "the outbox to drain")
    engine.poll(CONNECTOR)
    time.sleep(0.5)
    echo_writes = fake.writes() - writes_before_echo

    naive = baseline(fake, sys_ids, min(args.internal, 2000), rng)
    result = {
        "benchmark": "sync",
        "machine": machine(),
        "database": "postgresql" if url.startswith("postgresql") else "sqlite",
        "incidents": len(ids),
        "tickets_created": creates,
        "internal": {
            "changes": args.internal,
            "seconds": round(internal_seconds, 2),
            "vendor_writes": internal_writes,
            "writes_per_change": round(internal_writes / args.internal, 3),
            "lag": latency_summary(lags),
            "tickets_not_matching_incident": lost_out,
        },
        "external": {
            "edits": args.external,
            "tickets_edited": len(last_value),
            "seconds": round(external_seconds, 2),
            "events_recorded": events_after - events_before,
            "lag": latency_summary(in_lags),
            "incidents_not_matching_last_edit": lost_in,
        },
        "echo_writes_after_quiescence": echo_writes,
        "baseline_naive_connector": naive,
    }
    print(json.dumps(result, indent=2))
    container.close()
    fake.stop()
    tmp.cleanup()


if __name__ == "__main__":
    main()
