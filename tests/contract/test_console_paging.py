"""Paging the console's lists (incidents, alerts, boards) with the readers' cursors."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incidents.api.cookie_session import COOKIE
from incidents.app import Container, build_container, create_app
from incidents.policy.model import ATTRIBUTES
from tests.conftest import grant_access, make_settings

WRITER_ROLES = ("timeline.reader", "timeline.writer", "timeline.exporter", "incident.commander")
INCIDENTS = 23
SECRET_EVERY = 4  # every 4th incident is confidential: the reader may not see it


@dataclass
class Listing:
    container: Container
    reader: TestClient
    writer_token: str
    visible: list[str]  # newest first
    secret: set[str]


def _signed_in(container: Container, token: str) -> TestClient:
    client = TestClient(create_app(container), follow_redirects=False)
    client.__enter__()
    resp = client.post(
        "/sign-in",
        content=f"token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 303 and client.cookies.get(COOKIE)
    return client


@pytest.fixture
def listing(sqlite_url: str) -> Iterator[Listing]:
    container = build_container(make_settings(sqlite_url, policy_cache_seconds=0))
    grant_access(container, "writer@example.com", WRITER_ROLES, ATTRIBUTES, "secret")
    grant_access(container, "reader@example.com", ("incident.reader",), ())
    _, writer = container.tokens.create("writer@example.com")
    _, reader = container.tokens.create("reader@example.com")
    api = TestClient(create_app(container))
    api.__enter__()
    declared: list[str] = []
    secret: set[str] = set()
    for n in range(INCIDENTS):
        hidden = n % SECRET_EVERY == 0
        resp = api.post(
            "/api/v1/incidents",
            json={
                "title": f"Incident number {n}",
                "severity": "SEV-1" if n % 2 else "SEV-3",
                **({"classification": "confidential"} if hidden else {}),
            },
            headers={"Authorization": f"Bearer {writer}"},
        )
        assert resp.status_code == 201, resp.text
        declared.append(resp.json()["id"])
        if hidden:
            secret.add(resp.json()["id"])
    visible = [i for i in reversed(declared) if i not in secret]
    try:
        yield Listing(container, _signed_in(container, reader), writer, visible, secret)
    finally:
        container.close()


def _ids(page: str) -> list[str]:
    return re.findall(r'<td><a href="/incidents/(INC-\d+)">', page)


def _link(page: str, rel: str) -> str | None:
    names = {"next": "Next page", "prev": "Previous", "first": "First"}
    found = re.search(rf'<a href="([^"]+)"[^>]*>{names[rel]}</a>', page)
    return html.unescape(found.group(1)) if found else None


def _walk(client: TestClient, start: str) -> tuple[list[list[str]], list[str]]:
    """Every page from ``start`` following "Next page": their ids, and the URLs."""
    pages, urls, url = [], [], start
    while url is not None:
        resp = client.get(url)
        assert resp.status_code == 200, resp.text
        pages.append(_ids(resp.text))
        urls.append(url)
        url = _link(resp.text, "next")
        assert len(pages) <= INCIDENTS + 1, "the pages never end"
    return pages, urls


def test_the_default_page_size_is_fifty(sqlite_url: str) -> None:
    container = build_container(make_settings(sqlite_url))
    try:
        grant_access(container, "w@example.com", WRITER_ROLES, ATTRIBUTES)
        _, token = container.tokens.create("w@example.com")
        api = TestClient(create_app(container))
        api.__enter__()
        for n in range(51):
            resp = api.post(
                "/api/v1/incidents",
                json={"title": f"t{n}", "severity": "SEV-4"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert resp.status_code == 201
        client = _signed_in(container, token)
        first = client.get("/").text
        assert len(_ids(first)) == 50 and _link(first, "first") is None
        following = _link(first, "next")
        assert following is not None and token not in following
        second = client.get(following).text
        assert _ids(second) == ["INC-1"] and _link(second, "next") is None
        assert _link(second, "first") == "/" and _link(second, "prev") == "/"
    finally:
        container.close()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(size=st.integers(min_value=1, max_value=INCIDENTS + 2))
def test_the_pages_list_each_visible_incident_once(listing: Listing, size: int) -> None:
    pages, urls = _walk(listing.reader, f"/?limit={size}")
    assert [i for page in pages for i in page] == listing.visible
    assert len(pages) == max(1, -(-len(listing.visible) // size))
    assert all(len(page) == size for page in pages[:-1])
    # Walking back with "Previous" shows the same pages in reverse.
    last = listing.reader.get(urls[-1]).text
    back, url = [], _link(last, "prev")
    while url is not None:
        page = listing.reader.get(url).text
        back.append(_ids(page))
        url = _link(page, "prev")
    assert back == list(reversed(pages[:-1]))


def test_filters_are_kept_from_page_to_page(listing: Listing) -> None:
    sev1 = [
        i
        for i in listing.visible
        if "SEV-1" in listing.reader.get(f"/api/v1/incidents/{i}").json()["severity"]
    ]
    pages, urls = _walk(listing.reader, "/?severity=SEV-1&q=number&limit=2")
    assert [i for page in pages for i in page] == sev1
    assert len(pages) > 1
    assert all("severity=SEV-1" in url and "q=number" in url for url in urls)
    assert all("limit=2" in url for url in urls)


def test_a_bad_cursor_or_page_size_is_a_400_page(listing: Listing) -> None:
    for query in ("cursor=garbage", "limit=0", "limit=many", "limit=201"):
        resp = listing.reader.get(f"/?{query}")
        assert resp.status_code == 400, query
        assert resp.headers["content-type"].startswith("text/html")
        assert "first page" in resp.text or "limit" in resp.text
    # A cursor reused with other filters is refused, not applied to them.
    following = _link(listing.reader.get("/?limit=2").text, "next")
    assert following is not None
    resp = listing.reader.get(following + "&severity=SEV-3")
    assert resp.status_code == 400 and "first page" in resp.text
    for path in ("/alerts?cursor=garbage", "/boards?cursor=garbage", "/boards?limit=x"):
        assert listing.reader.get(path).status_code == 400, path


def test_boards_and_alerts_page_too(listing: Listing) -> None:
    _, urls = _walk(listing.reader, "/boards?persona=executive&limit=4")
    boards = [re.findall(r'<h2 id="b-(INC-\d+)"', listing.reader.get(u).text) for u in urls]
    assert [i for page in boards for i in page] == listing.visible
    assert len(urls) == -(-len(listing.visible) // 4)
    assert all("persona=executive" in url for url in urls)
    # Alerts: triggered through the API, then paged three at a time.
    writer = _signed_in(listing.container, listing.writer_token)
    csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', writer.get("/").text)
    assert csrf is not None
    for n in range(7):
        resp = writer.post(
            "/api/v1/timeline/events",
            json={
                "specversion": "1.0",
                "id": f"alert-{uuid.uuid4().hex}",
                "source": "alertmanager://prod",
                "type": "im.alert.trigger",
                "data": {
                    "alert": {
                        "key": f"am:alert-{n}",
                        "provider": "alertmanager",
                        "summary": f"alert {n}",
                        "severity": "warning",
                        "service": f"svc-{n}",
                    }
                },
            },
            headers={"X-CSRF-Token": csrf.group(1), "Content-Type": "application/cloudevents+json"},
        )
        assert resp.is_success, resp.text
    listed = listing.reader.get("/api/v1/alerts", params={"limit": 100}).json()["alerts"]
    url: str | None = "/alerts?limit=3"
    seen: list[list[str]] = []
    while url is not None:
        page = listing.reader.get(url).text
        seen.append(re.findall(r"<td><strong>(alert \d+)</strong>", page))
        url = _link(page, "next")
    assert [len(page) for page in seen] == [3, 3, 1]
    assert [a for page in seen for a in page] == [a["summary"] for a in listed]
