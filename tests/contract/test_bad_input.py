"""Bad input found by review: each is a 4xx naming the problem, never a 500."""

from __future__ import annotations

from typing import Any

from incidents.bus.relay import describe_error
from incidents.config import mask_url_password
from incidents.store.schema import correlation_groups
from tests.conftest import Api, event


def test_control_characters_in_attributes_are_refused(api: Api) -> None:
    forged = event(1, type_="im.note.add\ndata: {}\nid: 999999")
    r = api.post_event(forged)
    assert r.status_code == 400, r.text
    assert "control characters" in r.text
    r = api.post_event(event(2, subject="incident/INC-1\r\nX: y"))
    assert r.status_code == 400


def test_times_that_overflow_with_their_offset_are_refused(api: Api) -> None:
    for value in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"):
        r = api.post_event(event(value, time=value))
        assert r.status_code == 400, r.text
        r = api.get("/api/v1/incidents/INC-1/timeline", **{"from": value})
        assert r.status_code == 400, r.text


def test_a_resume_point_that_is_not_a_number_is_refused(api: Api) -> None:
    for value in ("²".encode("latin-1"), b"abc", b"1" * 30):
        r = api.client.get("/api/v1/events/stream", headers={**api.auth, "Last-Event-ID": value})
        assert r.status_code == 400, (value, r.text)
    r = api.client.get("/api/v1/events/stream", params={"last_event_id": "²"}, headers=api.auth)
    assert r.status_code == 400, r.text


def test_a_nul_in_a_path_or_query_is_a_400_or_not_found(api: Api) -> None:
    # PostgreSQL cannot search text for NUL (400); SQLite simply finds nothing.
    for path, params in (
        ("/api/v1/incidents/INC%00X", {}),
        ("/api/v1/alerts", {"provider": "a\x00b"}),
        ("/api/v1/incidents", {"q": "a\x00b"}),
    ):
        r = api.get(path, **params)
        assert r.status_code in (200, 400, 404), (path, r.text)
        assert r.headers["content-type"].startswith("application/"), r.text


def test_client_times_in_correlation_groups_are_not_trusted(api: Api) -> None:
    bogus: dict[str, Any] = {
        "alert": {"key": "k-1"},
        "correlation": {
            "groups": [{"key": "g-1", "incident_id": "INC-1", "opened_us": "x", "last_us": 2**70}]
        },
    }
    r = api.post_event(event(1, type_="im.alert.trigger", data=bogus))
    assert r.status_code == 201, r.text
    with api.container.engine.connect() as conn:
        row = conn.execute(correlation_groups.select()).one()
    assert row.opened_us == row.last_us > 0


def test_credentials_in_urls_are_masked() -> None:
    assert mask_url_password("nats://s3cret@h:4222") == "nats://***@h:4222"
    assert mask_url_password("nats://u:p@h1:4222,nats://u:q@h2:4222") == (
        "nats://u:***@h1:4222,nats://u:***@h2:4222"
    )
    assert mask_url_password("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert mask_url_password("sqlite:///./incidents.db") == "sqlite:///./incidents.db"


def test_outbox_errors_mask_bare_tokens_in_urls() -> None:
    text = describe_error(RuntimeError("connect nats://S3CRETTOKEN@h:4222 failed"))
    assert "S3CRETTOKEN" not in text and "nats://***@h:4222" in text
