"""SIGTERM drains `incidents serve`: no event the server acknowledged is lost.

A real server process takes appends from several clients at once; SIGTERM arrives in
the middle. The server stops accepting connections, answers the requests it holds,
commits what its writer queued and lets the outbox relay deliver it before exiting.
Every event answered with a 2xx must then be stored (and, with NATS, published),
which a restarted server confirms through the API.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy import func, select

from incidents.app import Container, build_container
from incidents.bus.relay import OutboxRelay
from incidents.store.engine import make_engine
from incidents.store.outbox_store import OutboxStore
from incidents.store.schema import outbox
from tests.conftest import CONSOLE_SCRIPT, event, free_port, make_settings
from tests.contract.test_outbox import Recorder, append, outbox_rows
from tests.integration.test_bus_nats import NATS_URL, _delete_stream, require_nats

CLIENTS = 4
# Acknowledged appends before SIGTERM is sent: the signal lands mid-ingest.
ACKED_BEFORE_SIGTERM = 150
APPEND_HEADERS = {"Content-Type": "application/cloudevents+json"}
ROLES = ["--role", "timeline.writer", "--role", "timeline.reader", "--role", "timeline.exporter"]
BATCH_HEADERS = {"Content-Type": "application/cloudevents-batch+json"}


def _env(database_url: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IM_")}
    env.update({"IM_DATABASE_URL": database_url, "IM_LOG_LEVEL": "info", **extra})
    return env


def _token(env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), "admin", "token", "create", "--user", "load@example.com", *ROLES],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


@dataclass
class Serve:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _serve(env: dict[str, str], log: Path) -> Serve:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Serve(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the server did not start: {server.output()[-2000:]}")
        time.sleep(0.1)


@dataclass
class Ingest:
    """Clients appending until the server goes away; what it acknowledged."""

    url: str
    token: str
    acked: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def run(self, client_no: int) -> None:
        incident = f"INC-{client_no + 1}"
        auth = {"Authorization": f"Bearer {self.token}"}
        deadline = time.monotonic() + 90
        n = 0
        with httpx.Client(base_url=self.url, headers=auth, timeout=30) as client:
            while not self.stop.is_set() and time.monotonic() < deadline:
                # One client sends batches, the others single events.
                batch = [
                    event(f"{client_no}-{n + i}", incident=incident)
                    for i in range(10 if client_no == 0 else 1)
                ]
                n += len(batch)
                try:
                    if len(batch) > 1:
                        resp = client.post(
                            "/api/v1/timeline/events", json=batch, headers=BATCH_HEADERS
                        )
                    else:
                        resp = client.post(
                            "/api/v1/timeline/events", json=batch[0], headers=APPEND_HEADERS
                        )
                except httpx.TransportError:
                    # The server stopped listening: nothing more will be acknowledged.
                    return
                if resp.status_code // 100 != 2:
                    with self.lock:
                        self.errors.append(f"{resp.status_code} {resp.text[:200]}")
                    continue
                body = resp.json()
                results = body.get("results", [body])
                ids = [r["event_id"] for r in results if r.get("status", 201) in (200, 201)]
                with self.lock:
                    self.acked.update(ids)


def _stored(server: Serve, token: str) -> set[str]:
    """Every event id of INC-1..INC-CLIENTS, read back through the API."""
    ids: set[str] = set()
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=30) as client:
        for n in range(1, CLIENTS + 1):
            params: dict[str, Any] = {"limit": 1000}
            while True:
                resp = client.get(f"/api/v1/incidents/INC-{n}/timeline", params=params)
                if resp.status_code == 404:
                    break
                resp.raise_for_status()
                page = resp.json()
                ids.update(e["id"] for e in page["events"])
                if not page.get("next_cursor"):
                    break
                params["cursor"] = page["next_cursor"]
            verify = client.get(f"/api/v1/incidents/INC-{n}/timeline/verify")
            if verify.status_code != 404:
                assert verify.json()["intact"] is True, verify.text
    return ids


async def _published_ids(stream: str) -> set[str]:
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        total = (await js.stream_info(stream)).state.messages
        sub = await js.pull_subscribe(
            ">", stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        ids: set[str] = set()
        seen = 0
        while seen < total:
            for msg in await sub.fetch(500, timeout=5):
                ids.add((msg.headers or {}).get("Nats-Msg-Id", ""))
                seen += 1
                await msg.ack()
        return ids
    finally:
        await nc.close()


@pytest.fixture(params=["sqlite", "postgresql+nats"])
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    """A database URL and the bus settings: SQLite with the in-process bus, or
    PostgreSQL with NATS JetStream (a stream of this test's own)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'incidents.db'}", {}
        return
    database_url: str = request.getfixturevalue("postgres_url")
    require_nats()
    stream = f"DRAIN_{uuid.uuid4().hex[:10]}"
    yield (
        database_url,
        {
            "IM_NATS_URL": NATS_URL,
            "IM_NATS_STREAM": stream,
            "IM_NATS_SUBJECT_PREFIX": f"drain{stream[6:]}",
        },
    )
    asyncio.run(_delete_stream(stream))


def test_sigterm_mid_ingest_loses_no_acknowledged_event(
    deployment: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    database_url, bus_env = deployment
    env = _env(database_url, bus_env)
    token = _token(env)
    server = _serve(env, tmp_path / "first.log")
    ingest = Ingest(server.url, token)
    clients = [threading.Thread(target=ingest.run, args=(n,)) for n in range(CLIENTS)]
    try:
        for client in clients:
            client.start()
        deadline = time.monotonic() + 60
        while ingest.count() < ACKED_BEFORE_SIGTERM:
            assert time.monotonic() < deadline, f"ingest too slow: {ingest.errors[:3]}"
            assert all(c.is_alive() for c in clients), server.output()[-2000:]
            time.sleep(0.01)
        server.process.send_signal(signal.SIGTERM)
        returncode = server.process.wait(timeout=60)
    finally:
        ingest.stop.set()
        if server.process.poll() is None:
            server.process.kill()
        for client in clients:
            client.join(timeout=60)
    output = server.output()
    # uvicorn re-raises the signal once it has shut down, as a process killed by it.
    assert returncode in (0, -signal.SIGTERM), output[-2000:]
    assert "Application shutdown complete" in output
    assert "Traceback" not in output
    assert not ingest.errors, ingest.errors[:3]
    acked = set(ingest.acked)
    assert len(acked) >= ACKED_BEFORE_SIGTERM

    # The relay delivered everything before the process exited.
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            pending = conn.execute(
                select(func.count()).select_from(outbox).where(outbox.c.processed_us.is_(None))
            ).scalar_one()
    finally:
        engine.dispose()
    assert pending == 0
    if bus_env:
        assert acked <= asyncio.run(_published_ids(bus_env["IM_NATS_STREAM"]))

    restarted = _serve(env, tmp_path / "second.log")
    try:
        stored = _stored(restarted, token)
    finally:
        restarted.process.terminate()
        restarted.process.wait(timeout=60)
    assert acked <= stored, f"{len(acked - stored)} acknowledged events are missing"


@pytest.fixture
def quiet(sqlite_url: str) -> Iterator[Container]:
    """A container without a relay of its own: its appends leave rows in the outbox."""
    c = build_container(make_settings(sqlite_url, outbox_relay=False))
    c.start()
    try:
        yield c
    finally:
        c.close()


def _idle_relay(c: Container, destination: Recorder) -> OutboxRelay:
    # Polls once a minute and is never notified: only a drain delivers in time.
    return OutboxRelay(
        OutboxStore(c.engine, c.backend), [destination], poll_seconds=60, batch_size=7
    )


@pytest.mark.parametrize(("drain_seconds", "delivered"), [(5.0, 30), (0.0, 0)])
def test_a_stopping_relay_delivers_what_is_due_when_asked_to_drain(
    quiet: Container, drain_seconds: float, delivered: int
) -> None:
    destination = Recorder()
    relay = _idle_relay(quiet, destination)
    relay.start()
    time.sleep(0.2)  # its first pass finds the outbox empty
    append(quiet, *(event(n) for n in range(30)))
    relay.stop(drain_seconds=drain_seconds)
    assert sum(destination.delivered.values()) == delivered
    assert sum(row.processed_us is None for row in outbox_rows(quiet)) == 30 - delivered


def test_a_relay_that_never_ran_delivers_nothing_on_stop(quiet: Container) -> None:
    # An admin command's container has a relay whose bus was never connected.
    destination = Recorder()
    append(quiet, event(1))
    _idle_relay(quiet, destination).stop(drain_seconds=5)
    assert destination.calls == 0
    assert len(outbox_rows(quiet)) == 1
