"""The web console over HTTP: sign-in, the session cookie and CSRF, pages, redaction."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incidents.api.cookie_session import COOKIE
from incidents.api.streams import sse_frame
from incidents.app import Container, build_container, create_app
from incidents.policy.model import ATTRIBUTES, Decision, Subject
from incidents.sessions.console import InProcessConsoleSessions, SessionLifetime
from tests.conftest import event, grant_access, make_settings

RESPONDER = ("incident.responder", "timeline.writer")
ADMINISH = ("timeline.reader", "timeline.writer", "timeline.exporter", "incident.commander")


class Console:
    def __init__(self, container: Container, url: str) -> None:
        self.container = container
        self.url = url

    def token(
        self, roles: tuple[str, ...] = ADMINISH, attributes: tuple[str, ...] = ATTRIBUTES
    ) -> str:
        email = f"u-{uuid.uuid4().hex[:8]}@example.com"
        grant_access(self.container, email, roles, attributes)
        _, token = self.container.tokens.create(email)
        return token

    def browser(self, token: str | None = None) -> TestClient:
        """A client that signed in with ``token`` (cookies kept, redirects not followed)."""
        client = TestClient(create_app(self.container), follow_redirects=False)
        client.__enter__()
        if token is not None:
            resp = client.post(
                "/sign-in",
                content=f"token={token}",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert resp.status_code == 303, resp.text
        return client


@pytest.fixture
def console(sqlite_url: str) -> Iterator[Console]:
    container = build_container(make_settings(sqlite_url, policy_cache_seconds=0))
    yield Console(container, sqlite_url)
    container.close()


def _csrf(page: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page)
    assert found is not None
    return found.group(1)


def _declare(client: TestClient, csrf: str, **fields: Any) -> str:
    resp = client.post(
        "/api/v1/incidents",
        json={"title": "Checkout errors", "severity": "SEV-2", **fields},
        headers={"X-CSRF-Token": csrf},
    )
    assert resp.status_code == 201, resp.text
    incident_id: str = resp.json()["id"]
    return incident_id


def test_pages_need_a_session_and_sign_in_keeps_the_token_out_of_urls(console: Console) -> None:
    anonymous = console.browser()
    resp = anonymous.get("/")
    assert resp.status_code == 303 and resp.headers["location"] == "/sign-in"
    bad = anonymous.post(
        "/sign-in",
        content="token=im_nope",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert bad.status_code == 401 and "unknown, revoked or expired" in bad.text
    token = console.token()
    elsewhere = anonymous.post(
        "/sign-in",
        content=f"token={token}",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://evil.example",
        },
    )
    assert elsewhere.status_code == 403 and "set-cookie" not in elsewhere.headers
    resp = anonymous.post(
        "/sign-in",
        content=f"token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 303 and token not in resp.headers["location"]
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    page = anonymous.get("/")
    assert page.status_code == 200 and token not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert anonymous.get("/api/v1/whoami").json()["subject"].endswith("@example.com")


def test_changes_through_the_cookie_need_the_pages_csrf_proof(console: Console) -> None:
    client = console.browser(console.token())
    csrf = _csrf(client.get("/").text)
    refused = client.post("/api/v1/incidents", json={"title": "x"})
    assert refused.status_code == 403 and refused.json()["type"].endswith("csrf-refused")
    forged = client.post("/api/v1/incidents", json={"title": "x"}, headers={"X-CSRF-Token": "0"})
    assert forged.status_code == 403
    assert _declare(client, csrf) == "INC-1"
    out = client.post("/sign-out", content=f"csrf={csrf}",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert out.status_code == 303
    assert client.get("/").status_code == 303


def test_the_pages_render_for_a_signed_in_reader(console: Console) -> None:
    client = console.browser(console.token())
    csrf = _csrf(client.get("/").text)
    incident = _declare(client, csrf, service="checkout")
    listing = client.get("/", params={"status": "open"}).text
    assert f'href="/incidents/{incident}"' in listing and "sev-sev-2" in listing
    assert incident not in client.get("/", params={"status": "resolved"}).text
    page = client.get(f"/incidents/{incident}").text
    assert 'data-stream="/api/v1/incidents/INC-1/stream?named=false"' in page
    options = re.findall(r'<option value="(\w+)">\1</option>', page.split('id="new-status"')[1])
    assert options[:3] == ["mitigated", "resolved", "canceled"]
    for persona in ("responder", "commander", "executive", "customer", "compliance"):
        board = client.get(f"/incidents/{incident}", params={"persona": persona})
        assert board.status_code == 200, persona
        assert client.get("/boards", params={"persona": persona}).status_code == 200
    panel = client.get(f"/incidents/{incident}/board-panel", params={"persona": "executive"})
    assert "A major (SEV-2) incident affecting checkout" in panel.text
    assert client.get("/alerts").status_code == 200
    assert client.get("/declare").status_code == 200
    assert client.get("/incidents/INC-99").status_code == 404
    assert client.get("/boards", params={"persona": "ceo"}).status_code == 422


def test_a_reader_without_clearance_sees_the_marker(console: Console) -> None:
    writer = console.browser(console.token())
    csrf = _csrf(writer.get("/").text)
    incident = _declare(writer, csrf)
    resp = writer.post(
        "/api/v1/timeline/events",
        json=event(
            "pii",
            incident=incident,
            imdataclass={"pii": ["content"]},
            data={"title": "Customer call", "content": "MK-SECRET-PII"},
        ),
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/cloudevents+json"},
    )
    assert resp.status_code in (200, 201), resp.text
    assert "MK-SECRET-PII" in writer.get(f"/incidents/{incident}").text
    reader = console.browser(console.token(roles=("incident.reader",), attributes=()))
    page = reader.get(f"/incidents/{incident}").text
    assert "MK-SECRET-PII" not in page and "[REDACTED]" in page
    # A reader gets no actions they may not take.
    assert 'id="new-status"' not in page and 'id="note"' not in page


def test_a_responder_is_not_offered_closing(console: Console) -> None:
    admin = console.browser(console.token())
    csrf = _csrf(admin.get("/").text)
    incident = _declare(admin, csrf)
    moved = admin.post(
        f"/api/v1/incidents/{incident}/status",
        json={"status": "resolved"},
        headers={"X-CSRF-Token": csrf},
    )
    assert moved.status_code == 200
    assert '<option value="closed">' in admin.get(f"/incidents/{incident}").text
    responder = console.browser(console.token(roles=RESPONDER))
    page = responder.get(f"/incidents/{incident}").text
    assert '<option value="closed">' not in page and '<option value="open">' in page


def test_unnamed_frames_carry_the_position_but_no_event_name(console: Console) -> None:
    client = console.browser(console.token())
    csrf = _csrf(client.get("/").text)
    _declare(client, csrf)
    row = next(console.container.reader.chain("INC-1"))
    decision = Decision(Subject("r@example.com"), frozenset(), frozenset({"public"}), frozenset())
    frame = sse_frame(row, decision, named=False)
    assert frame.startswith(b"id: 1\ndata: {") and b"\nevent:" not in frame
    assert sse_frame(row, decision).startswith(b"id: 1\nevent: im.incident.declare\n")


def test_acknowledging_an_alert_keeps_its_description(console: Console) -> None:
    client = console.browser(console.token())
    csrf = _csrf(client.get("/").text)
    headers = {"X-CSRF-Token": csrf, "Content-Type": "application/cloudevents+json"}
    alert = {"key": "am:db-down", "provider": "alertmanager", "summary": "db down"}
    trigger = {
        "specversion": "1.0",
        "id": "a-1",
        "source": "alertmanager://prod",
        "type": "im.alert.trigger",
        "data": {"alert": {**alert, "severity": "critical", "service": "db"}},
    }
    assert client.post("/api/v1/timeline/events", json=trigger, headers=headers).is_success
    # What the alerts page's button sends.
    ack = {
        "specversion": "1.0",
        "id": "a-2",
        "source": "im://console",
        "type": "im.alert.acknowledge",
        "data": {"alert": {"key": "am:db-down", "provider": "alertmanager"}},
    }
    assert client.post("/api/v1/timeline/events", json=ack, headers=headers).is_success
    listed = client.get("/api/v1/alerts").json()["alerts"]
    assert [(a["key"], a["summary"], a["alert"]["service"]) for a in listed] == [
        ("am:db-down", "db down", "db")
    ]
    page = client.get("/alerts").text
    assert "acknowledged" in page and "db down" in page


# --- server-side sessions ---------------------------------------------------------------


class Clock:
    """Time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _cookie(client: TestClient) -> str:
    value = client.cookies.get(COOKIE)
    assert value
    return value


def _with_cookie(console: Console, value: str) -> TestClient:
    client = console.browser()
    client.cookies.set(COOKIE, value)
    return client


def _signed_out(client: TestClient) -> None:
    """The browser is sent to sign in; the API and the SSE stream answer 401."""
    page = client.get("/")
    assert page.status_code == 303 and page.headers["location"] == "/sign-in"
    for path in ("/api/v1/whoami", "/api/v1/events/stream"):
        resp = client.get(path)
        assert resp.status_code == 401, path
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert "sign in again" in resp.json()["detail"]


def test_the_cookie_carries_a_session_id_not_the_token(console: Console) -> None:
    token = console.token()
    client = console.browser(token)
    session_id = _cookie(client)
    assert token not in session_id and len(session_id) >= 43
    assert token.removeprefix("im_") not in session_id
    assert client.get("/api/v1/whoami").status_code == 200
    # Another sign-in with the same token is another session.
    assert _cookie(console.browser(token)) != session_id


def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(console: Console) -> None:
    client = console.browser(console.token())
    session_id = _cookie(client)
    copy = _with_cookie(console, session_id)
    assert copy.get("/").status_code == 200
    csrf = _csrf(client.get("/").text)
    out = client.post(
        "/sign-out",
        content=f"csrf={csrf}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]
    _signed_out(copy)
    assert console.container.console_sessions is not None
    assert asyncio.run(console.container.console_sessions.get(session_id)) is None


def test_a_made_up_or_tampered_session_id_is_sent_to_sign_in(console: Console) -> None:
    session_id = _cookie(console.browser(console.token()))
    changed = session_id[:-1] + ("A" if session_id[-1] != "A" else "B")
    for forged in (changed, "x" * 43, "%00" * 5000):
        _signed_out(_with_cookie(console, forged))
    # Being sent to sign in also clears the stale cookie.
    page = _with_cookie(console, "x" * 43).get("/")
    assert f'{COOKIE}=""' in page.headers["set-cookie"]


def test_the_csrf_proof_is_bound_to_the_session(console: Console) -> None:
    token = console.token()
    first, second = console.browser(token), console.browser(token)
    proof = _csrf(first.get("/").text)
    refused = second.post("/api/v1/incidents", json={"title": "x"}, headers={"X-CSRF-Token": proof})
    assert refused.status_code == 403 and refused.json()["type"].endswith("csrf-refused")
    assert _declare(second, _csrf(second.get("/").text)) == "INC-1"


def test_revoking_the_token_ends_its_sessions(console: Console) -> None:
    email = f"u-{uuid.uuid4().hex[:8]}@example.com"
    grant_access(console.container, email, ADMINISH, ATTRIBUTES)
    info, token = console.container.tokens.create(email)
    client = console.browser(token)
    session_id = _cookie(client)
    assert client.get("/").status_code == 200
    console.container.tokens.revoke(info.token_id)
    _signed_out(_with_cookie(console, session_id))
    assert asyncio.run(console.container.console_sessions.get(session_id)) is None


def test_an_expired_session_is_sent_to_sign_in(console: Console) -> None:
    clock = Clock()
    console.container.console_sessions = InProcessConsoleSessions(
        SessionLifetime(absolute_seconds=7200, idle_seconds=600), clock
    )
    client = console.browser(console.token())
    clock.now += 599
    assert client.get("/").status_code == 200
    clock.now += 599
    assert client.get("/").status_code == 200
    clock.now += 600
    _signed_out(_with_cookie(console, _cookie(client)))


def test_a_non_ascii_csrf_proof_is_refused_not_a_server_error(console: Console) -> None:
    client = console.browser(console.token())
    # Header bytes outside ASCII (the server reads them as Latin-1).
    refused = client.post(
        "/api/v1/incidents",
        json={"title": "x"},
        headers={"X-CSRF-Token": "é".encode()},
    )
    assert refused.status_code == 403 and refused.json()["type"].endswith("csrf-refused")
    out = client.post(
        "/sign-out",
        content="csrf=%C3%A9",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert out.status_code == 403 and "proof" in out.text
    # Still signed in: the refused sign-out ended nothing.
    assert client.get("/").status_code == 200


def test_signing_in_again_ends_the_previous_session(console: Console) -> None:
    client = console.browser(console.token())
    first = _cookie(client)
    again = client.post(
        "/sign-in",
        content=f"token={console.token()}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert again.status_code == 303 and _cookie(client) != first
    assert client.get("/").status_code == 200
    # A copy of the first cookie is useless: the server forgot that session.
    _signed_out(_with_cookie(console, first))
    assert asyncio.run(console.container.console_sessions.get(first)) is None


def test_signing_out_from_another_sites_page_is_refused(console: Console) -> None:
    client = console.browser(console.token())
    csrf = _csrf(client.get("/").text)
    refused = client.post(
        "/sign-out",
        content=f"csrf={csrf}",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://evil.example",
        },
    )
    assert refused.status_code == 403 and "this site's own page" in refused.text
    assert client.get("/").status_code == 200
