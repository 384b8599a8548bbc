"""Live streams: SSE frames, resume with Last-Event-ID, policy on every frame, WebSocket.

SSE runs against a real uvicorn server in a thread (streams need a real connection);
both backends.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from incidents.app import Container, build_container, create_app
from tests.conftest import event, grant_access, make_settings, stream_settings
from tests.contract.test_policy import _CLASS_MARKERS, _VISIBILITY_MARKERS, _sensitive_events
from tests.integration.test_cli import Server, serve

WAIT = 10.0


@dataclass
class Frame:
    id: str | None
    event: str | None
    data: Any
    comment: str | None = None


@dataclass
class SseClient:
    """Reads an SSE response on a thread; frames wait in a queue for the test."""

    response: httpx.Response
    client: httpx.Client
    frames: queue.Queue[Frame] = field(default_factory=queue.Queue)
    thread: threading.Thread | None = None

    def start(self) -> SseClient:
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for line in self.response.iter_lines():
                if line == "":
                    if "data" in fields:
                        data = fields.get("data")
                        self.frames.put(
                            Frame(
                                fields.get("id"),
                                fields.get("event"),
                                orjson.loads(data) if data else None,
                                fields.get("comment"),
                            )
                        )
                    fields = {}
                elif line.startswith(":"):
                    self.frames.put(Frame(None, None, None, line[1:].strip()))
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value.lstrip(" ")
        except (httpx.HTTPError, RuntimeError):
            pass

    def events(self, count: int) -> list[Frame]:
        out: list[Frame] = []
        while len(out) < count:
            frame = self.frames.get(timeout=WAIT)
            if frame.comment is None:
                out.append(frame)
        return out

    def quiet(self, seconds: float) -> list[Frame]:
        """Event frames that arrive within ``seconds`` (expected: none)."""
        out: list[Frame] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = self.frames.get(timeout=left)
            except queue.Empty:
                break
            if frame.comment is None:
                out.append(frame)
        return out

    def close(self) -> None:
        self.response.close()
        self.client.close()


@dataclass
class Site:
    server: Server
    container: Container
    streams: list[SseClient] = field(default_factory=list)

    def token(
        self,
        email: str,
        roles: tuple[str, ...] = ("timeline.reader", "timeline.writer", "incident.responder"),
        attributes: tuple[str, ...] | None = None,
    ) -> dict[str, str]:
        if attributes is None:
            grant_access(self.container, email, roles)
        else:
            grant_access(self.container, email, roles, attributes)
        _, token = self.container.tokens.create(email)
        return {"Authorization": f"Bearer {token}"}

    def append(self, headers: dict[str, str], events: list[dict[str, Any]]) -> None:
        response = httpx.post(
            f"{self.server.url}/api/v1/timeline/events",
            content=orjson.dumps(events),
            headers={**headers, "Content-Type": "application/cloudevents-batch+json"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["created"] == len(events)

    def open(
        self, headers: dict[str, str], path: str = "/api/v1/events/stream", **params: Any
    ) -> SseClient:
        client = httpx.Client(base_url=self.server.url, timeout=httpx.Timeout(30, read=60))
        request = client.build_request("GET", path, headers=headers, params=params)
        response = client.send(request, stream=True)
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = SseClient(response, client).start()
        # The first comment proves the subscription is registered.
        first = stream.frames.get(timeout=WAIT)
        assert first.comment == "connected"
        self.streams.append(stream)
        return stream


@pytest.fixture
def site(database_url: str) -> Iterator[Site]:
    container = build_container(stream_settings(database_url))
    handle = serve(container, "unused", database_url)
    s = Site(handle, container)
    try:
        yield s
    finally:
        for stream in s.streams:
            stream.close()
        handle.stop()


def test_frames_carry_positions_types_and_entries(site: Site) -> None:
    writer = site.token("w@example.com")
    stream = site.open(writer)
    site.append(writer, [event(i, incident="INC-1") for i in range(3)])
    frames = stream.events(3)
    positions = [int(f.id) for f in frames if f.id]
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert [f.event for f in frames] == ["im.note.add"] * 3
    assert [f.data["id"] for f in frames] == ["evt-0", "evt-1", "evt-2"]
    assert all(f.data["position"] == int(f.id or 0) for f in frames)


def test_resume_after_last_event_id_has_no_gap_and_no_duplicate(site: Site) -> None:
    writer = site.token("w@example.com")
    stream = site.open(writer)
    site.append(writer, [event(i, incident="INC-1") for i in range(3)])
    seen = stream.events(3)
    stream.close()
    # Appended while the client was away, in several commits.
    site.append(writer, [event(i, incident="INC-1") for i in range(3, 6)])
    site.append(writer, [event(i, incident="INC-2") for i in range(6, 8)])
    again = site.open({**writer, "Last-Event-ID": seen[-1].id or ""})
    frames = again.events(5)
    assert [f.data["id"] for f in frames] == [f"evt-{i}" for i in range(3, 8)]
    site.append(writer, [event(8, incident="INC-1")])
    assert [f.data["id"] for f in again.events(1)] == ["evt-8"]
    assert again.quiet(1.0) == []
    # The same through the query parameter, filtered to one incident and type.
    filtered = site.open(writer, last_event_id=seen[0].id, incident="INC-1", type="im.note.*")
    assert [f.data["id"] for f in filtered.events(6)] == [
        "evt-1",
        "evt-2",
        "evt-3",
        "evt-4",
        "evt-5",
        "evt-8",
    ]


def test_incident_stream_and_type_filter(site: Site) -> None:
    writer = site.token("w@example.com")
    site.append(writer, [event(0, incident="INC-1")])
    stream = site.open(writer, "/api/v1/incidents/INC-1/stream")
    site.append(
        writer,
        [
            event(1, incident="INC-2"),
            event(2, incident="INC-1", type_="im.incident.escalate"),
            event(3, incident="INC-1"),
        ],
    )
    assert [f.data["id"] for f in stream.events(2)] == ["evt-2", "evt-3"]
    typed = site.open(writer, type="im.incident.*")
    site.append(
        writer,
        [event(4, incident="INC-1"), event(5, incident="INC-3", type_="im.incident.declare")],
    )
    assert [f.data["id"] for f in typed.events(1)] == ["evt-5"]


def test_heartbeats_while_idle(site: Site) -> None:
    stream = site.open(site.token("w@example.com"))
    comments = [stream.frames.get(timeout=WAIT).comment for _ in range(2)]
    assert comments == ["heartbeat", "heartbeat"]


def test_bad_requests_are_problems(site: Site) -> None:
    url = f"{site.server.url}/api/v1/events/stream"
    assert httpx.get(url).status_code == 401
    reader = site.token("r@example.com")
    bad = httpx.get(url, headers={**reader, "Last-Event-ID": "abc"})
    assert bad.status_code == 400 and "last_event_id" in bad.json()["detail"]
    assert httpx.get(url, headers=reader, params={"type": "bad type!"}).status_code == 400
    missing = httpx.get(f"{site.server.url}/api/v1/incidents/INC-404/stream", headers=reader)
    assert missing.status_code == 404
    nobody = site.token("n@example.com", roles=("timeline.writer",))
    assert httpx.get(url, headers=nobody).status_code == 403


def test_no_stream_shows_what_the_same_reader_could_not_get(site: Site) -> None:
    writer = site.token("w@example.com", roles=("timeline.writer",))
    plain = site.token("plain@example.com", roles=("timeline.reader",), attributes=())
    pii_only = site.token("pii@example.com", roles=("timeline.reader",), attributes=("pii_access",))
    everything = site.token("all@example.com", roles=("timeline.reader",))
    streams = {
        name: site.open(h) for name, h in (("plain", plain), ("pii", pii_only), ("all", everything))
    }
    sensitive = _sensitive_events()
    site.append(writer, sensitive)
    visible_counts = {"plain": len(sensitive) - 2, "pii": len(sensitive) - 2, "all": len(sensitive)}
    for name, stream in streams.items():
        frames = stream.events(visible_counts[name])
        assert stream.quiet(1.0) == []
        text = "\n".join(orjson.dumps(f.data).decode() for f in frames)
        attributes = {"plain": set(), "pii": {"pii_access"}, "all": {"everything"}}[name]
        for marker, attribute in _CLASS_MARKERS.items():
            shown = f'"{marker}"' in text
            assert shown == (name == "all" or attribute in attributes), (name, marker)
        for marker in _VISIBILITY_MARKERS:
            assert (f'"{marker}"' in text) == (name == "all"), (name, marker)
        # The same reader's GET shows exactly the same events.
        listed = httpx.get(
            f"{site.server.url}/api/v1/incidents/INC-P/timeline",
            headers={"plain": plain, "pii": pii_only, "all": everything}[name],
            params={"limit": 100},
        ).json()["events"]
        assert [f.data for f in frames] == listed


def test_websocket_stream_with_resume(database_url: str) -> None:
    container = build_container(make_settings(database_url, stream_heartbeat_seconds=0.5))
    grant_access(container, "w@example.com", ("timeline.reader", "timeline.writer"))
    _, token = container.tokens.create("w@example.com")
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(container)) as client:
        with client.websocket_connect("/api/v1/events/ws", headers=auth) as ws:
            client.post(
                "/api/v1/timeline/events",
                content=orjson.dumps([event(i) for i in range(2)]),
                headers={**auth, "Content-Type": "application/cloudevents-batch+json"},
            )
            messages = []
            while len(messages) < 2:
                message = ws.receive_json()
                if message["kind"] == "event":
                    messages.append(message)
            assert [m["event"]["id"] for m in messages] == ["evt-0", "evt-1"]
            first = messages[0]["id"]
        with client.websocket_connect(
            f"/api/v1/events/ws?last_event_id={first}", headers=auth
        ) as ws:
            message = ws.receive_json()
            while message["kind"] != "event":
                message = ws.receive_json()
            assert message["event"]["id"] == "evt-1"
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/api/v1/events/ws") as ws,
        ):
            ws.receive_json()
        assert refused.value.code == 1008


def test_a_stream_ends_when_its_token_is_revoked_or_its_grants_change(site: Site) -> None:
    writer = site.token("w@example.com")
    grant_access(site.container, "r@example.com", ("timeline.reader",))
    info, token = site.container.tokens.create("r@example.com")
    reader = {"Authorization": f"Bearer {token}"}
    stream = site.open(reader)
    site.append(writer, [event(1)])
    assert [f.data["id"] for f in stream.events(1)] == ["evt-1"]
    site.container.tokens.revoke(info.token_id)
    assert stream.thread is not None
    stream.thread.join(timeout=10)
    assert not stream.thread.is_alive(), "the stream outlived its revoked token"
    site.append(writer, [event(2)])
    assert stream.quiet(0.5) == []
    # Reconnecting with the revoked token is refused.
    again = httpx.get(f"{site.server.url}/api/v1/events/stream", headers=reader)
    assert again.status_code == 401
