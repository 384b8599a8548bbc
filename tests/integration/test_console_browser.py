"""The web console in a real browser: Playwright driving Debian's chromium against a
running ``incidents serve``.

Sign in, declare, watch an event appended through the API appear on the open timeline
page, change status, and see a redacted field as a reader without clearance. With
``IM_SCREENSHOT_DIR`` set, the main pages are saved there (``make screenshots`` writes
docs/images/).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from incidents.app import build_container
from incidents.events.envelope import normalize
from incidents.identity.directory import GrantKind, PrincipalType
from incidents.policy.model import ATTRIBUTES
from tests.conftest import (
    REDIS_URL,
    REQUIRE_SERVICES,
    event,
    grant_access,
    make_settings,
    require_redis,
)
from tests.fakes.oidc_provider import Client, running_provider
from tests.integration.test_cli import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CONSOLE_SCRIPT = Path(sys.executable).with_name("incidents")
# How long a live event may take to reach the open page.
LIVE_WITHIN_MS = 5_000

sync_api = pytest.importorskip("playwright.sync_api")


@dataclass
class Running:
    """``incidents serve`` as a subprocess on a fixed port, which can be restarted."""

    url: str
    port: int
    database: str
    admin: str
    reader: str
    process: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        env = {
            **os.environ,
            "IM_DATABASE_URL": self.database,
            "IM_STREAM_HEARTBEAT_SECONDS": "1",
            # Console sessions in Redis outlive the server's restart below; in-process
            # ones would end with it and sign the open page out.
            "IM_REDIS_URL": REDIS_URL,
            **self.extra_env,
        }
        self.process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                _, err = self.process.communicate()
                pytest.fail(f"incidents serve did not start: {err.decode()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """``incidents serve`` on a free port, over a database with two users."""
    require_redis()
    folder = tmp_path_factory.mktemp("console")
    database = f"sqlite:///{folder / 'incidents.db'}"
    container = build_container(make_settings(database))
    grant_access(
        container,
        "ada@example.com",
        ("timeline.reader", "timeline.writer", "timeline.exporter", "incident.commander"),
        ATTRIBUTES,
        "secret",
    )
    grant_access(container, "rex@example.com", ("incident.reader",), ())
    _, admin = container.tokens.create("ada@example.com")
    _, reader = container.tokens.create("rex@example.com")
    container.close()
    port = free_port()
    running = Running(f"http://127.0.0.1:{port}", port, database, admin, reader)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    if not CHROMIUM.exists():
        # CI (IM_REQUIRE_SERVICES=1) must run these: a missing browser is a failure.
        missing = "needs Debian's chromium at /usr/bin/chromium (make test installs it)"
        if REQUIRE_SERVICES:
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


def _shots() -> Path | None:
    folder = os.environ.get("IM_SCREENSHOT_DIR")
    if not folder:
        return None
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _shot(page: sync_api.Page, name: str) -> None:
    folder = _shots()
    if folder is not None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _sign_in(page: sync_api.Page, url: str, token: str) -> None:
    page.goto(f"{url}/")
    sync_api.expect(page).to_have_url(f"{url}/sign-in")
    _shot(page, "sign-in")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    sync_api.expect(page).to_have_url(f"{url}/")
    assert token not in page.url


def _append(server: Running, token: str, body: dict[str, object]) -> None:
    resp = httpx.post(
        f"{server.url}/api/v1/timeline/events",
        json=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/cloudevents+json",
        },
        timeout=10,
    )
    assert resp.status_code in (200, 201), resp.text


def test_declare_watch_live_events_and_change_status(
    browser: sync_api.Browser, server: Running
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    _sign_in(page, server.url, server.admin)
    # The token is in an HttpOnly cookie: the page's scripts cannot read it.
    assert page.evaluate("document.cookie") == ""

    page.get_by_role("link", name="Declare").click()
    page.get_by_label("Title").fill("Checkout returns 502")
    page.get_by_label("Severity").select_option("SEV-2")
    page.get_by_label("Service").fill("checkout")
    page.get_by_label("Commander (email)").fill("ada@example.com")
    page.get_by_role("button", name="Declare").click()
    sync_api.expect(page).to_have_url(f"{server.url}/incidents/INC-1")
    sync_api.expect(page.get_by_role("heading", level=1)).to_contain_text("Checkout returns 502")
    sync_api.expect(page.locator("#live")).to_have_text("live", timeout=LIVE_WITHIN_MS)

    # An event appended through the API shows up on the open page without a reload.
    marker = f"rolled back build {uuid.uuid4().hex[:8]}"
    _append(
        server,
        server.admin,
        event(
            "live-1",
            incident="INC-1",
            time=None,
            data={"title": "Deploy rolled back", "note": marker},
        ),
    )
    sync_api.expect(page.locator("#timeline")).to_contain_text(marker, timeout=LIVE_WITHIN_MS)
    # The board follows the stream too.
    _append(
        server,
        server.admin,
        event(
            "update-1",
            incident="INC-1",
            type_="im.status_update.post",
            time=None,
            data={"title": "Update", "message": "Error rate back to normal"},
        ),
    )
    sync_api.expect(page.locator("#board")).to_contain_text(
        "Error rate back to normal", timeout=LIVE_WITHIN_MS
    )
    _shot(page, "incident")

    # Only the moves the state machine allows are offered.
    status = page.get_by_label("Change status")
    assert status.locator("option").all_inner_texts() == ["mitigated", "resolved", "canceled"]
    status.select_option("mitigated")
    page.get_by_label("Reason").fill("rolled back")
    page.get_by_role("button", name="Change status").click()
    sync_api.expect(page.locator(".incident-head .st")).to_have_text("mitigated")
    assert page.get_by_label("Change status").locator("option").all_inner_texts() == [
        "resolved",
        "open",
    ]

    # A dropped connection: the server goes away, events are stored meanwhile, and
    # once it is back the page shows each of them once (the browser resumes with
    # Last-Event-ID, the server continues after it).
    server.stop()
    sync_api.expect(page.locator("#live")).not_to_have_text("live", timeout=LIVE_WITHIN_MS)
    offline = build_container(make_settings(server.database))
    offline.start()
    try:
        missed = [
            normalize(event(f"gap-{n}", incident="INC-1", time=None, data={"note": f"away {n}"}))
            for n in range(3)
        ]
        offline.timeline.submit(missed, "ada@example.com").result()
    finally:
        offline.close()
    server.start()
    for n in range(3):
        sync_api.expect(page.locator("#timeline")).to_contain_text(
            f"away {n}", timeout=3 * LIVE_WITHIN_MS
        )
    sync_api.expect(page.locator("#live")).to_have_text("live")
    for n in range(3):
        assert page.locator("#timeline .entry-content", has_text=f"away {n}").count() == 1

    page.get_by_label("Add a note").fill("watching the error rate")
    page.get_by_role("button", name="Add note").click()
    sync_api.expect(page.locator("#timeline")).to_contain_text(
        "watching the error rate", timeout=LIVE_WITHIN_MS
    )

    page.goto(f"{server.url}/")
    sync_api.expect(page.get_by_role("link", name="INC-1")).to_be_visible()
    _shot(page, "incidents")
    page.goto(f"{server.url}/boards?persona=executive")
    sync_api.expect(page.locator(".boards")).to_contain_text("A major (SEV-2) incident")
    _shot(page, "boards-executive")
    page.goto(f"{server.url}/incidents/INC-1?persona=commander")
    sync_api.expect(page.locator("#board")).to_contain_text("Open actions")
    _shot(page, "incident-commander")
    # An alert for correlation to place, then acknowledged from the alerts page.
    _append(
        server,
        server.admin,
        {
            "specversion": "1.0",
            "id": "alert-1",
            "source": "alertmanager://prod",
            "type": "im.alert.trigger",
            "data": {
                "alert": {
                    "key": "am:checkout-5xx",
                    "provider": "alertmanager",
                    "summary": "checkout 5xx above 5%",
                    "severity": "critical",
                    "service": "checkout",
                }
            },
        },
    )
    page.goto(f"{server.url}/alerts")
    row = page.get_by_role("row").filter(has_text="checkout 5xx above 5%")
    sync_api.expect(row).to_contain_text("firing")
    row.get_by_role("button", name="Acknowledge").click()
    sync_api.expect(
        page.get_by_role("row").filter(has_text="checkout 5xx above 5%")
    ).to_contain_text("acknowledged")
    _shot(page, "alerts")
    context.close()

    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    small = phone.new_page()
    _sign_in(small, server.url, server.admin)
    small.goto(f"{server.url}/incidents/INC-1")
    sync_api.expect(small.locator("#timeline")).to_contain_text(marker)
    wide = small.evaluate(
        "[...document.querySelectorAll('body *')]"
        ".filter(e => e.getBoundingClientRect().right > 391)"
        ".map(e => e.tagName + '.' + e.className).slice(0, 5)"
    )
    # Nothing wider than the screen: the page reflows instead of scrolling sideways.
    assert small.evaluate("document.documentElement.scrollWidth") <= 390, wide
    _shot(small, "incident-phone")
    phone.close()


def test_a_reader_without_clearance_sees_redacted(
    browser: sync_api.Browser, server: Running
) -> None:
    httpx.post(
        f"{server.url}/api/v1/incidents",
        json={"title": "Customer data exposure", "severity": "SEV-1"},
        headers={"Authorization": f"Bearer {server.admin}"},
        timeout=10,
    ).raise_for_status()
    incidents = httpx.get(
        f"{server.url}/api/v1/incidents",
        params={"q": "Customer data exposure"},
        headers={"Authorization": f"Bearer {server.admin}"},
        timeout=10,
    ).json()["incidents"]
    incident = incidents[0]["id"]
    _append(
        server,
        server.admin,
        event(
            "pii-1",
            incident=incident,
            time=None,
            imdataclass={"pii": ["content"]},
            data={"title": "Customer called", "content": "jane.doe@example.org, +1 555 0100"},
        ),
    )
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, server.url, server.reader)
    page.goto(f"{server.url}/incidents/{incident}")
    timeline = page.locator("#timeline")
    sync_api.expect(timeline).to_contain_text("Customer called")
    sync_api.expect(timeline).to_contain_text("[REDACTED]")
    assert "jane.doe@example.org" not in page.content()
    # A reader is offered no change and no export they may not take.
    assert page.get_by_label("Change status").count() == 0
    assert page.get_by_role("link", name="Markdown").count() == 0
    _shot(page, "redacted")

    # The keyboard alone: the first Tab reaches the skip link, and the persona list
    # changes the board without a mouse.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.get_by_label("Persona").focus()
    page.keyboard.press("ArrowDown")
    sync_api.expect(page).to_have_url(f"{server.url}/incidents/{incident}?persona=commander")
    sync_api.expect(page.locator("#board")).to_contain_text("Open actions")
    context.close()


def test_sign_in_at_the_identity_provider(
    browser: sync_api.Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The redirect flow in a real browser: the provider's answer is a cross-site
    navigation, which must still reach the attempt cookie and end signed in."""
    require_redis()
    folder = tmp_path_factory.mktemp("console-oidc")
    database = f"sqlite:///{folder / 'incidents.db'}"
    container = build_container(make_settings(database))
    sre = container.directory.create_group("sre")
    container.directory.grant(PrincipalType.GROUP, sre.group_id, GrantKind.ROLE, "incident.reader")
    container.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running_provider() as provider:
        provider.register(Client("console", "console-secret", (f"{url}/auth/oidc/callback",)))
        provider.user = {"email": "olga@example.com", "groups": ["sre"]}
        running = Running(
            url,
            port,
            database,
            "",
            "",
            extra_env={
                "IM_OIDC_ISSUER": provider.issuer,
                "IM_OIDC_AUDIENCE": "incidents-api",
                "IM_OIDC_CLIENT_ID": "console",
                "IM_OIDC_CLIENT_SECRET": "console-secret",
                "IM_OIDC_REDIRECT_URL": f"{url}/auth/oidc/callback",
            },
        )
        running.start()
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{url}/")
            sync_api.expect(page).to_have_url(f"{url}/sign-in")
            page.get_by_role("link", name="Sign in with 127.0.0.1").click()
            sync_api.expect(page).to_have_url(f"{url}/")
            sync_api.expect(page.locator(".who")).to_contain_text("olga@example.com")
            assert page.evaluate("document.cookie") == ""
            page.get_by_role("button", name="Sign out").click()
            sync_api.expect(page).to_have_url(f"{url}/sign-in")
            page.goto(f"{url}/")
            sync_api.expect(page).to_have_url(f"{url}/sign-in")
            context.close()
        finally:
            running.stop()
