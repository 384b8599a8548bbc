"""Horizontal scale: two ``incidents serve`` processes on one PostgreSQL and one NATS.

An event appended through the first reaches an SSE client of the second, and it is
the bus that carries it: the second server's poll interval (30 s) is far longer than
the test waits (10 s). The delivery latency itself is measured by bench/streams.py,
not asserted here.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from incidents.app import build_container
from tests.conftest import CONSOLE_SCRIPT, event, free_port, grant_access, make_settings
from tests.integration.test_bus_nats import NATS_URL, Stream, _delete_stream, require_nats
from tests.integration.test_streams import SseClient


def _start(
    database_url: str, bus: Stream, name: str, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IM_")}
    env.update(
        {
            "IM_DATABASE_URL": database_url,
            "IM_NATS_URL": NATS_URL,
            "IM_NATS_STREAM": bus.name,
            "IM_NATS_SUBJECT_PREFIX": bus.prefix,
            # No consumer name: each server derives its own from where it listens.
            # Far above how long the test waits: only the bus can wake the stream.
            "IM_STREAM_POLL_SECONDS": "30",
            "IM_LOG_LEVEL": "warning",
        }
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server {name} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"server {name} did not become ready: {log.read_text()[-2000:]}")


@pytest.fixture
def bus() -> Iterator[Stream]:
    require_nats()
    tag = uuid.uuid4().hex[:10]
    yield Stream(f"FANOUT_{tag}", f"fanout_{tag}.events")
    asyncio.run(_delete_stream(f"FANOUT_{tag}"))


@pytest.fixture
def pair(
    postgres_url: str, bus: Stream, tmp_path: Path
) -> Iterator[tuple[str, str, dict[str, str]]]:
    setup = build_container(make_settings(postgres_url))
    grant_access(setup, "w@example.com", ("timeline.reader", "timeline.writer"))
    _, token = setup.tokens.create("w@example.com")
    setup.close()
    first, first_url = _start(postgres_url, bus, "fanout-a", tmp_path / "a.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        second, second_url = _start(postgres_url, bus, "fanout-b", tmp_path / "b.log")
        yield first_url, second_url, {"Authorization": f"Bearer {token}"}
    finally:
        for process in (first, second):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def test_an_append_on_one_server_reaches_a_stream_of_the_other(
    pair: tuple[str, str, dict[str, str]],
) -> None:
    first_url, second_url, auth = pair
    client = httpx.Client(base_url=second_url, timeout=httpx.Timeout(30, read=60))
    response = client.send(
        client.build_request("GET", "/api/v1/events/stream", headers=auth), stream=True
    )
    assert response.status_code == 200
    stream = SseClient(response, client).start()
    try:
        assert stream.frames.get(timeout=10).comment == "connected"
        for n in range(3):
            appended = httpx.post(
                f"{first_url}/api/v1/timeline/events",
                content=orjson.dumps(event(f"fan-{n}")),
                headers={**auth, "Content-Type": "application/cloudevents+json"},
            )
            assert appended.status_code == 201, appended.text
            [frame] = stream.events(1)
            assert frame.data["id"] == f"evt-fan-{n}"
    finally:
        stream.close()
