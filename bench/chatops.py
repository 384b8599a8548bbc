"""ChatOps benchmark: slash-command acknowledgement latency and Events API ingestion.

Starts a local server that follows Slack's Web API and the platform as a subprocess
configured with one Slack connector pointing at it, then measures in one run:

* acknowledgement latency of slash commands under ``--concurrency`` concurrent
  requests (p50/p99): ``/im help`` (signature check only: the baseline) against
  ``/im note`` (user lookup, policy decision, a command through the log's writer);
* ``--messages`` channel messages posted through the Events API (``--concurrency``
  at a time), a tenth of them delivered a second time as Slack retries
  (``X-Slack-Retry-Num``), then the incident's timeline counted: none lost, none
  doubled; against the same number of single-event appends on
  ``POST /api/v1/timeline/events`` (the baseline, measured first in the same run).

    .venv/bin/python bench/chatops.py --backend sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from benchlib import (
    ROOT,
    Server,
    drop_pg_database,
    latency_summary,
    log,
    machine,
    recreate_pg_database,
)

sys.path.insert(0, str(ROOT))
from tests.slack_api import FakeSlack, sign

SECRET = "8f14e45fceea167a5a36dedd4bea2543"
TEAM = "TBENCH001"
USER = "UBENCH001"
EMAIL = "bench@example.com"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="sqlite")
    parser.add_argument("--database-url", help="default: a fresh database for the run")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10, help="bursts of --concurrency commands")
    parser.add_argument("--messages", type=int, default=10_000)
    return parser.parse_args(argv)


async def timed(call: Any) -> float:
    started = time.perf_counter()
    response = await call
    elapsed = time.perf_counter() - started
    if response.status_code not in (200, 201):
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
    return elapsed


def command_body(text: str, channel: str, n: int) -> bytes:
    return urlencode(
        {
            "command": "/im",
            "text": text,
            "user_id": USER,
            "channel_id": channel,
            "team_id": TEAM,
            "trigger_id": f"bench-{n}",
        }
    ).encode()


async def commands(
    client: httpx.AsyncClient, text: str, channel: str, rounds: int, concurrency: int
) -> list[float]:
    """Latencies of ``rounds`` bursts of ``concurrency`` concurrent slash commands."""
    out: list[float] = []
    n = 0
    for _ in range(rounds):
        bodies = []
        for _ in range(concurrency):
            n += 1
            bodies.append(command_body(text.format(n=n), channel, n))
        calls = [
            timed(
                client.post("/api/v1/chat/slack/acme/commands", content=b, headers=sign(SECRET, b))
            )
            for b in bodies
        ]
        out.extend(await asyncio.gather(*calls))
    return out


# Connections the server dropped under load, retried by the client (counted).
TRANSPORT_RETRIES = [0]


async def bounded(calls: list[Any], concurrency: int) -> list[float]:
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Any) -> float:
        async with gate:
            for attempt in range(5):
                try:
                    return await timed(call())
                except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError):
                    # Sent again like a client (or Slack) would: the ids make it harmless.
                    TRANSPORT_RETRIES[0] += 1
                    if attempt == 4:
                        raise
            raise AssertionError("unreachable")

    return list(await asyncio.gather(*(one(c) for c in calls)))


def message_body(channel: str, n: int) -> bytes:
    event = {
        "type": "message",
        "channel": channel,
        "user": USER,
        "text": f"message {n}",
        "ts": f"{1_700_000_000 + n}.000100",
    }
    return orjson.dumps({"type": "event_callback", "team_id": TEAM, "event": event})


async def run(args: argparse.Namespace, server: Server, slack: FakeSlack) -> dict[str, Any]:
    token = server.create_token(EMAIL, roles=("incident.commander",))
    async with httpx.AsyncClient(
        base_url=server.base_url,
        limits=httpx.Limits(max_connections=args.concurrency),
        timeout=60,
    ) as client:
        # One incident whose channel the messages are posted in.
        body = command_body("new Benchmark incident sev2", "CGENERAL", 0)
        answer = await client.post(
            "/api/v1/chat/slack/acme/commands", content=body, headers=sign(SECRET, body)
        )
        incident_id = answer.json()["text"].split()[1]
        deadline = time.monotonic() + 30
        while not slack.channels or not next(iter(slack.channels.values())).pins:
            if time.monotonic() > deadline:
                raise RuntimeError("the incident channel was not created")
            await asyncio.sleep(0.05)
        channel = next(iter(slack.channels.values())).id
        log(f"{incident_id} has channel {channel}")

        log("slash commands: /im help (baseline), then /im note")
        help_lat = await commands(client, "help", channel, args.rounds, args.concurrency)
        note_lat = await commands(
            client, "note bench note {n}", channel, args.rounds, args.concurrency
        )

        log(f"baseline: {args.messages} single-event appends on the timeline API")
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/cloudevents+json"}

        def append(n: int) -> Any:
            event = {
                "specversion": "1.0",
                "id": f"base-{n}",
                "source": "im://bench",
                "type": "im.chat.message",
                "subject": f"incident/{incident_id}",
                "data": {"text": f"message {n}"},
            }
            return lambda: client.post(
                "/api/v1/timeline/events", content=orjson.dumps(event), headers=auth
            )

        started = time.perf_counter()
        await bounded([append(n) for n in range(args.messages)], args.concurrency)
        baseline_seconds = time.perf_counter() - started

        log(f"Events API: {args.messages} messages, a tenth of them retried")

        def post(n: int, retry: bool) -> Any:
            raw = message_body(channel, n)
            # A retry is signed anew by Slack (its own timestamp).
            headers = sign(SECRET, raw, int(time.time()) + (5 if retry else 0))
            headers["Content-Type"] = "application/json"
            if retry:
                headers["X-Slack-Retry-Num"] = "1"
            return lambda: client.post(
                "/api/v1/chat/slack/acme/events", content=raw, headers=headers
            )

        calls = [post(n, False) for n in range(args.messages)]
        retries = [post(n, True) for n in range(0, args.messages, 10)]
        started = time.perf_counter()
        event_lat = await bounded(calls + retries, args.concurrency)
        events_seconds = time.perf_counter() - started

        stored: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"type": "im.slack.message", "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = await client.get(
                f"/api/v1/incidents/{incident_id}/timeline",
                params=params,
                headers={"Authorization": f"Bearer {token}"},
            )
            doc = page.json()
            stored.extend(entry["id"] for entry in doc["events"])
            cursor = doc.get("next_cursor")
            if not cursor:
                break
    return {
        "slash_commands": {
            "concurrency": args.concurrency,
            "help_baseline": latency_summary(help_lat),
            "note": latency_summary(note_lat),
        },
        "events_api": {
            "messages": args.messages,
            "retries_sent": len(retries),
            "stored": len(stored),
            "distinct": len(set(stored)),
            "lost": args.messages - len(set(stored)),
            "doubled": len(stored) - len(set(stored)),
            "seconds": round(events_seconds, 2),
            "per_second": round((args.messages + len(retries)) / events_seconds, 1),
            "latency": latency_summary(event_lat),
        },
        "client_transport_retries": TRANSPORT_RETRIES[0],
        "timeline_append_baseline": {
            "events": args.messages,
            "seconds": round(baseline_seconds, 2),
            "per_second": round(args.messages / baseline_seconds, 1),
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print JSON results on stdout."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-chatops-"))
    if args.database_url:
        url = args.database_url
    elif args.backend == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
    else:
        url = "postgresql://postgres@127.0.0.1:5432/bench_chatops"
        recreate_pg_database(url)
    # The revision the server runs, taken before it starts (commits may follow).
    measured_on = machine()
    slack = FakeSlack().start()
    slack.add_user(USER, EMAIL)
    config = workdir / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "connectors": {
                    "slack": [
                        {
                            "name": "acme",
                            "bot_token": slack.token,
                            "signing_secret": SECRET,
                            "api_url": slack.url,
                        }
                    ]
                }
            }
        )
    )
    server = Server(url, env={"IM_CONFIG": str(config), "IM_SQLITE_SYNCHRONOUS": "NORMAL"})
    try:
        server.create_token(EMAIL, roles=("incident.commander",))
        server.start()
        results = asyncio.run(run(args, server, slack))
    finally:
        server.stop()
        slack.stop()
        if args.backend == "postgresql" and not args.database_url:
            drop_pg_database(url)
    print(
        json.dumps(
            {"benchmark": "chatops", "backend": args.backend, "machine": measured_on, **results},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
