"""The timeline's HTTP contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from sqlalchemy import text

from incidents.store.engine import writes
from tests.conftest import Api, event, grant_access


def _count(api: Api) -> int:
    with api.container.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM timeline_events")).scalar_one())


def _all(api: Api, incident: str = "INC-1", **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = dict(params)
        if cursor:
            query["cursor"] = cursor
        resp = api.get(f"/api/v1/incidents/{incident}/timeline", **query)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        out.extend(body["events"])
        cursor = body.get("next_cursor")
        if not cursor:
            return out


# --- appending ---------------------------------------------------------------------------


def test_first_write_is_201_with_the_guide_body(api: Api) -> None:
    resp = api.post_event(event(1, incident="INC-1234"))
    assert resp.status_code == 201
    body = resp.json()
    assert body["event_id"] == "evt-1"
    assert body["created"] is True
    assert body["incident_id"] == "INC-1234"


def test_replay_is_200_created_false_with_the_guide_message(api: Api) -> None:
    api.post_event(event(1))
    resp = api.post_event(event(1))
    assert resp.status_code == 200
    assert resp.json() == {
        "event_id": "evt-1",
        "created": False,
        "incident_id": "INC-1",
        "message": "Event already exists with this dedupe key",
    }
    assert _count(api) == 1


def test_same_key_different_content_is_409_naming_the_key(api: Api) -> None:
    api.post_event(event(1, imoriginid="pagerduty:alert:P1"))
    resp = api.post_event(
        event(2, data={"note": "other"}, **{"im__origin_id": "pagerduty:alert:P1"})
    )
    assert resp.status_code == 409
    assert resp.headers["content-type"].startswith("application/problem+json")
    detail = resp.json()["detail"]
    assert "pagerduty:alert:P1" in detail and "im://tests" in detail
    assert _count(api) == 1


def test_origin_id_is_the_dedupe_key_when_given(api: Api) -> None:
    first = api.post_event(event(1, imoriginid="pd-123"))
    # A fresh event id for the same origin fact is a replay, not a new event.
    again = api.post_event(event(99, imoriginid="pd-123", data={"note": "note 1"}))
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["event_id"] == "evt-1"
    # Without origin ids, the same event id from another source is a different event.
    other = api.post_event(event(1, source="im://elsewhere"))
    assert other.status_code == 201
    assert _count(api) == 2


def test_both_extension_spellings_are_stored_once_normalised(api: Api) -> None:
    dotted = event(1, **{"im__actor": "oncall@example.com", "im__correlation_key": "ck"})
    assert api.post_event(dotted).status_code == 201
    spec = event(1, imactor="oncall@example.com", imcorrelationkey="ck")
    assert api.post_event(spec).status_code == 200  # the same event, spelled the other way
    [entry] = _all(api)
    assert entry["actor"] == "oncall@example.com"
    assert entry["correlation_key"] == "ck"


def test_overview_type_names_are_stored_under_im_names(api: Api) -> None:
    api.post_event(event(1, type_="com.incidents.declared.v1"))
    api.post_event(event(2, type_="com.incidents.note_added.v1"))
    types = [e["event_type"] for e in _all(api)]
    assert types == ["im.incident.declare", "im.note.add"]


def test_incident_from_im_incident_id(api: Api) -> None:
    resp = api.post_event(event(1, incident=None, imincidentid="INC-77"))
    assert resp.json()["incident_id"] == "INC-77"
    assert len(_all(api, "INC-77")) == 1


def test_recorder_is_the_caller_whatever_the_actor_claims(api: Api) -> None:
    api.post_event(event(1, imactor="mallory@example.com"))
    api.post_event(event(2))
    entries = _all(api)
    assert [e["actor"] for e in entries] == ["mallory@example.com", "alice@example.com"]
    assert {e["recorded_by"] for e in entries} == {"alice@example.com"}
    # The recorder cannot be forged: a claimed one (as in an exported event) is dropped.
    spoof = event(3, imrecordedby="mallory@example.com")
    assert api.post_event(spoof).status_code == 201
    assert _all(api)[-1]["recorded_by"] == "alice@example.com"


def test_binary_mode(api: Api) -> None:
    resp = api.client.post(
        "/api/v1/timeline/events",
        content=b'{"note": "from binary mode"}',
        headers={
            **api.auth,
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": "bin-1",
            "ce-source": "im%3A%2F%2Fbinary",
            "ce-type": "im.note.add",
            "ce-subject": "incident/INC-1",
            "ce-time": "2025-12-11T10:30:00Z",
            "ce-imactor": "bob%40example.com",
        },
    )
    assert resp.status_code == 201, resp.text
    stored = api.get("/api/v1/timeline/events/bin-1").json()
    assert stored["source"] == "im://binary"
    assert stored["imactor"] == "bob@example.com"
    assert stored["datacontenttype"] == "application/json"
    assert stored["data"] == {"note": "from binary mode"}


def test_batch_answers_per_event_in_order_and_bad_events_fail_alone(api: Api) -> None:
    stored = api.post_event(event(1))
    assert stored.status_code == 201
    batch = [
        event(2),
        {"specversion": "1.0", "id": "", "source": "s", "type": "t"},
        event(1),
        event(3, time="yesterday"),
        event(4),
    ]
    resp = api.post_batch(batch)
    assert resp.status_code == 200
    body = resp.json()
    statuses = [r["status"] for r in body["results"]]
    assert statuses == [201, 400, 200, 400, 201]
    assert body["results"][3]["errors"][0]["field"] == "time"
    assert (body["created"], body["duplicates"], body["rejected"]) == (2, 1, 2)
    assert [e["id"] for e in _all(api)] == ["evt-1", "evt-2", "evt-4"]


def test_duplicates_inside_one_batch(api: Api) -> None:
    body = api.post_batch([event(1), event(1), event(1, data={"note": "changed"})]).json()
    assert [r["status"] for r in body["results"]] == [201, 200, 409]
    assert _count(api) == 1


def test_64_kib_event_is_accepted(api: Api) -> None:
    big = event(1, data={"blob": "x" * (64 * 1024)})
    assert api.post_event(big).status_code == 201
    assert len(api.get("/api/v1/timeline/events/evt-1").json()["data"]["blob"]) == 64 * 1024


@pytest.mark.parametrize(
    ("body", "content_type", "status", "needle"),
    [
        (b"{not json", "application/cloudevents+json", 400, "not valid JSON"),
        (b"[]", "application/cloudevents+json", 400, "batch"),
        (b"{}", "text/plain", 415, "text/plain"),
        (b"{}", None, 415, "content mode"),
        (b'{"a":1}', "application/cloudevents-batch+json", 400, "JSON array"),
    ],
)
def test_malformed_requests_are_problems_and_store_nothing(
    api: Api, body: bytes, content_type: str | None, status: int, needle: str
) -> None:
    api.post_event(event(1))
    headers = dict(api.auth)
    if content_type:
        headers["Content-Type"] = content_type
    resp = api.client.post("/api/v1/timeline/events", content=body, headers=headers)
    assert resp.status_code == status
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert needle in problem["detail"]
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert _count(api) == 1


def test_invalid_event_names_every_bad_field(api: Api) -> None:
    bad = {
        "specversion": "0.3",
        "id": "x",
        "source": "s",
        "type": "t",
        "time": "2025-12-11",
        "Bad.Name": 1,
        "data": 1,
        "data_base64": "AA==",
    }
    resp = api.post_event(bad)
    assert resp.status_code == 400
    fields = {e["field"] for e in resp.json()["errors"]}
    assert {"specversion", "time", "Bad.Name", "data"} <= fields


def test_oversized_body_is_413_with_the_limit(api: Api) -> None:
    limit = api.container.settings.max_event_bytes
    huge = event(1, data={"blob": "x" * (limit + 10)})
    resp = api.post_event(huge)
    assert resp.status_code == 413
    assert str(limit) in resp.json()["detail"]
    assert _count(api) == 0


def test_batch_over_the_event_limit_is_413(database_url: str) -> None:
    from fastapi.testclient import TestClient

    from incidents.app import build_container, create_app
    from tests.conftest import grant_access, make_settings

    container = build_container(make_settings(database_url, max_batch_events=3))
    grant_access(container, "alice@example.com")
    _, token = container.tokens.create("alice@example.com")
    with TestClient(create_app(container)) as client:
        resp = client.post(
            "/api/v1/timeline/events",
            json=[event(i) for i in range(4)],
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/cloudevents-batch+json",
            },
        )
    assert resp.status_code == 413
    assert "limit is 3" in resp.json()["detail"]


# --- querying ----------------------------------------------------------------------------


def _seed(api: Api) -> None:
    api.post_batch(
        [
            event(1, type_="im.incident.declare", time="2025-12-10T09:00:00Z", imactor="a"),
            event(2, type_="im.alert.trigger", time="2025-12-10T10:00:00Z", imactor="pd"),
            event(3, type_="im.incident.acknowledge", time="2025-12-10T11:00:00Z", imactor="b"),
            event(4, type_="im.note.add", time="2025-12-10T12:00:00Z", imactor="b"),
            event(5, type_="im.alert.resolve", time="2025-12-11T08:00:00Z", imactor="pd"),
            event(6, type_="im.note.add", time="2025-12-09T08:00:00Z", imcorrelationkey="k1"),
            event(7, type_="im.note.add", incident="INC-2", imfingerprint="fp"),
        ]
    )


def test_entries_have_the_guide_shape_in_time_order(api: Api) -> None:
    _seed(api)
    entries = _all(api)
    assert [e["id"] for e in entries] == ["evt-6", "evt-1", "evt-2", "evt-3", "evt-4", "evt-5"]
    for key in (
        "id",
        "incident_id",
        "event_time",
        "event_type",
        "actor",
        "title",
        "content",
        "source",
        "created_at",
        "data",
    ):
        assert key in entries[0]
    assert entries[1]["title"] == "Incident Declared"
    assert entries[1]["content"] == "note 1"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type": "im.incident.*"}, ["evt-1", "evt-3"]),
        ({"type": ["im.alert.*", "im.incident.declare"]}, ["evt-1", "evt-2", "evt-5"]),
        ({"type": "im.alert.*,im.note.add"}, ["evt-6", "evt-2", "evt-4", "evt-5"]),
        ({"type": "im.incident.acknowledge"}, ["evt-3"]),
        ({"type": "IM.INCIDENT.*"}, []),
        (
            {"from": "2025-12-10T10:00:00Z", "to": "2025-12-10T12:00:00Z"},
            ["evt-2", "evt-3", "evt-4"],
        ),
        ({"from": "2025-12-10T11:00:00+01:00"}, ["evt-2", "evt-3", "evt-4", "evt-5"]),
        ({"actor": "pd"}, ["evt-2", "evt-5"]),
        ({"correlation_key": "k1"}, ["evt-6"]),
        ({"order": "desc", "type": "im.note.add"}, ["evt-4", "evt-6"]),
    ],
)
def test_filters(api: Api, params: dict[str, Any], expected: list[str]) -> None:
    _seed(api)
    assert [e["id"] for e in _all(api, limit=2, **params)] == expected


def test_fingerprint_filter_and_incident_isolation(api: Api) -> None:
    _seed(api)
    assert [e["id"] for e in _all(api, "INC-2", fingerprint="fp")] == ["evt-7"]
    assert _all(api, "INC-1", fingerprint="fp") == []


def test_last_page_has_no_cursor(api: Api) -> None:
    _seed(api)
    body = api.get("/api/v1/incidents/INC-1/timeline", limit=6).json()
    assert len(body["events"]) == 6
    assert "next_cursor" not in body
    body = api.get("/api/v1/incidents/INC-1/timeline", limit=5).json()
    assert "next_cursor" in body


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"from": "last tuesday"}, "from"),
        ({"to": "2025-13-01T00:00:00Z"}, "to"),
        ({"from": "2025-12-11T00:00:00Z", "to": "2025-12-10T00:00:00Z"}, "from"),
        ({"type": "im.incident.*; drop table"}, "type"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "A" * 80}, "cursor"),
    ],
)
def test_bad_query_parameters_are_400(api: Api, params: dict[str, Any], field: str) -> None:
    _seed(api)
    resp = api.get("/api/v1/incidents/INC-1/timeline", **params)
    assert resp.status_code == 400, resp.text
    problem = resp.json()
    assert problem["errors"][0]["field"] == field


def test_tampered_cursor_and_cursor_reused_with_other_filters_are_400(api: Api) -> None:
    _seed(api)
    cursor = api.get("/api/v1/incidents/INC-1/timeline", limit=2).json()["next_cursor"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[3] ^= 0x01
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    resp = api.get("/api/v1/incidents/INC-1/timeline", limit=2, cursor=forged)
    assert resp.status_code == 400
    resp = api.get("/api/v1/incidents/INC-1/timeline", limit=2, cursor=cursor, actor="pd")
    assert resp.status_code == 400
    assert "different filters" in resp.json()["detail"]
    ok = api.get("/api/v1/incidents/INC-1/timeline", limit=2, cursor=cursor)
    assert ok.status_code == 200


def test_unknown_incident_and_event_are_404(api: Api) -> None:
    _seed(api)
    for path in (
        "/api/v1/incidents/INC-404/timeline",
        "/api/v1/incidents/INC-404/timeline/verify",
        "/api/v1/incidents/INC-404/timeline/export",
        "/api/v1/timeline/events/nope",
    ):
        resp = api.get(path)
        assert resp.status_code == 404, path
        assert resp.headers["content-type"].startswith("application/problem+json")


def test_get_returns_the_stored_cloudevent(api: Api) -> None:
    sent = event(1, imactor="oncall@example.com", imoriginid="pd-1", imrelatedids=["a", "b"])
    api.post_event(sent)
    got = api.get("/api/v1/timeline/events/evt-1").json()
    for key in ("specversion", "id", "source", "type", "subject", "time", "data"):
        assert got[key] == sent[key]
    assert got["imactor"] == "oncall@example.com"
    assert got["imoriginid"] == "pd-1"
    assert got["imrelatedids"] == "a,b"
    dotted = api.get("/api/v1/timeline/events/evt-1", dialect="dotted").json()
    assert dotted["im.actor"] == "oncall@example.com"
    assert dotted["im.related_ids"] == ["a", "b"]


def test_event_id_shared_by_two_sources_needs_the_source(api: Api) -> None:
    api.post_event(event(1))
    api.post_event(event(1, source="im://other"))
    assert api.get("/api/v1/timeline/events/evt-1").status_code == 409
    got = api.get("/api/v1/timeline/events/evt-1", source="im://other")
    assert got.status_code == 200
    assert got.json()["source"] == "im://other"


# --- exports -----------------------------------------------------------------------------


def test_json_export_parses_with_the_official_sdk(api: Api) -> None:
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.v1.http import from_dict

    _seed(api)
    api.post_event(
        event(
            8,
            imdataclass={"pii": ["customer_email"]},
            imrelatedids="evt-1,evt-2",
            data_base64=base64.b64encode(b"\x00\x01").decode(),
            data=None,
        )
        | {"data": None}
    )
    resp = api.get("/api/v1/incidents/INC-1/timeline/export", format="json")
    assert resp.status_code == 200
    assert resp.headers["x-event-count"] == str(len(json.loads(resp.text)))
    exported = json.loads(resp.text)
    fmt = JSONFormat()
    for item in exported:
        parsed = fmt.read(None, json.dumps(item).encode())
        assert parsed.get_id() == item["id"]
        legacy = from_dict(item)
        assert legacy["type"] == item["type"]
    assert all("imactor" in item for item in exported)


def test_dotted_dialect_writes_the_guides_names(api: Api) -> None:
    api.post_event(event(1, imactor="oncall@example.com"))
    exported = api.get(
        "/api/v1/incidents/INC-1/timeline/export", format="json", dialect="dotted"
    ).json()
    assert exported[0]["im.actor"] == "oncall@example.com"
    assert exported[0]["im.incident_id"] == "INC-1"


def test_markdown_export_follows_the_guide(api: Api) -> None:
    api.post_event(
        event(
            1,
            type_="im.incident.declare",
            imactor="oncall@example.com",
            data={
                "title": "Database Connection Pool Exhausted",
                "description": "Payment API experiencing connection timeouts",
            },
        )
    )
    api.post_event(
        event(2, type_="im.incident.acknowledge", time="2025-12-11T10:32:15Z", imactor="alice")
    )
    resp = api.get("/api/v1/incidents/INC-1/timeline/export", format="md")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/markdown")
    report = resp.text
    assert report.startswith("# Incident Timeline: INC-1\n\n**Generated**: ")
    assert "**Events**: 2\n" in report
    assert "### 2025-12-11T10:30:00Z - Incident Declared\n" in report
    assert "**Actor**: oncall@example.com\n**Type**: im.incident.declare" in report
    assert "Database Connection Pool Exhausted\n\nPayment API experiencing" in report
    assert "### 2025-12-11T10:32:15Z - Incident Acknowledged" in report
    assert report.index("Incident Declared") < report.index("Incident Acknowledged")


def test_markdown_export_neutralises_headings_in_event_text(api: Api) -> None:
    api.post_event(event(1, data={"note": "# Fake heading\n---"}))
    report = api.get("/api/v1/incidents/INC-1/timeline/export", format="md").text
    assert "\n# Fake heading" not in report
    assert "\\# Fake heading" in report


def test_bad_export_format_is_400(api: Api) -> None:
    api.post_event(event(1))
    resp = api.get("/api/v1/incidents/INC-1/timeline/export", format="pdf")
    assert resp.status_code == 400


# --- tamper evidence and append-only -----------------------------------------------------


def test_verify_reports_an_intact_chain(api: Api) -> None:
    _seed(api)
    body = api.get("/api/v1/incidents/INC-1/timeline/verify").json()
    assert body["intact"] is True
    assert body["events"] == 6
    assert body["first_broken_position"] is None


def _disable_append_only(api: Api) -> None:
    with writes(api.container.engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE timeline_events DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER timeline_events_no_update"))
            conn.execute(text("DROP TRIGGER timeline_events_no_delete"))


def test_the_database_refuses_updates_and_deletes(api: Api) -> None:
    api.post_event(event(1))
    for statement in (
        "UPDATE timeline_events SET actor = 'mallory'",
        "DELETE FROM timeline_events",
    ):
        engine = writes(api.container.engine)
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert _count(api) == 1


def test_verify_finds_a_changed_event(api: Api) -> None:
    _seed(api)
    _disable_append_only(api)
    with writes(api.container.engine).begin() as conn:
        position = conn.execute(
            text("SELECT position FROM timeline_events WHERE event_id = 'evt-3'")
        ).scalar_one()
        conn.execute(
            text("UPDATE timeline_events SET actor = 'mallory' WHERE position = :p"),
            {"p": position},
        )
    body = api.get("/api/v1/incidents/INC-1/timeline/verify").json()
    assert body["intact"] is False
    assert body["first_broken_position"] == position


def test_verify_finds_a_removed_event_and_a_truncated_tail(api: Api) -> None:
    _seed(api)
    _disable_append_only(api)
    with writes(api.container.engine).begin() as conn:
        positions = [
            row[0]
            for row in conn.execute(
                text(
                    "SELECT position FROM timeline_events WHERE incident_id = 'INC-1' "
                    "ORDER BY position"
                )
            )
        ]
        conn.execute(text("DELETE FROM timeline_events WHERE position = :p"), {"p": positions[-1]})
    body = api.get("/api/v1/incidents/INC-1/timeline/verify").json()
    assert body["intact"] is False
    with writes(api.container.engine).begin() as conn:
        conn.execute(text("DELETE FROM timeline_events WHERE position = :p"), {"p": positions[2]})
    body = api.get("/api/v1/incidents/INC-1/timeline/verify").json()
    assert body["intact"] is False
    assert body["first_broken_position"] == positions[3]


# --- authentication and operations -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/timeline/events"),
        ("GET", "/api/v1/timeline/events/evt-1"),
        ("GET", "/api/v1/incidents/INC-1/timeline"),
        ("GET", "/api/v1/incidents/INC-1/timeline/verify"),
        ("GET", "/api/v1/incidents/INC-1/timeline/export"),
        ("GET", "/api/v1/whoami"),
    ],
)
def test_every_api_endpoint_needs_a_valid_token(api: Api, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer im_nope"}, {"Authorization": "Basic eDp5"}):
        resp = api.client.request(method, path, headers=headers)
        assert resp.status_code == 401
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.headers["www-authenticate"].startswith("Bearer")


def test_revoked_token_is_refused(api: Api) -> None:
    grant_access(api.container, "bob@example.com", roles=(), attributes=())
    info, token = api.container.tokens.create("bob@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/v1/whoami", headers=headers).json()["subject"] == "bob@example.com"
    api.container.tokens.revoke(info.token_id)
    assert api.client.get("/api/v1/whoami", headers=headers).status_code == 401


def test_only_token_hashes_are_stored(api: Api) -> None:
    with api.container.engine.connect() as conn:
        rows = conn.execute(text("SELECT token_hash FROM api_tokens")).fetchall()
    assert rows
    assert all(api.token.encode() not in bytes(row[0]) for row in rows)


def test_health_readiness_and_metrics_are_open(api: Api) -> None:
    api.post_event(event(1))
    api.post_event(event(1))
    api.get("/api/v1/incidents/INC-1/timeline")
    api.get("/api/v1/incidents/INC-1/timeline/export").read()
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").status_code == 200
    metrics = api.client.get("/metrics").text
    assert 'timeline_events_total{type="im.note.add"} 1.0' in metrics
    assert 'timeline_dedupe_hits_total{outcome="duplicate"} 1.0' in metrics
    assert "timeline_query_duration_seconds_count 1.0" in metrics
    assert 'timeline_export_duration_seconds_count{format="json"} 1.0' in metrics


def test_unknown_route_is_a_problem(api: Api) -> None:
    resp = api.get("/api/v1/nothing-here")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("application/problem+json")


def test_the_api_description_and_its_page_are_open_and_nothing_else(api: Api) -> None:
    for path in ("/redoc", "/openapi.json"):
        assert api.client.get(path).status_code == 404
    document = api.client.get("/api/v1/openapi.json").json()
    assert "/api/v1/timeline/events" in document["paths"]
    # It says how to authenticate, so the page's Authorize button sends the token.
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["security"] == [{"bearer": []}]
    # The endpoints that take no user token say so; the rest inherit the requirement.
    for path, method in (("/healthz", "get"), ("/api/v1/openapi.json", "get")):
        assert document["paths"][path][method]["security"] == []
    assert document["paths"]["/api/v1/ingest/pagerduty"]["post"]["security"] == []
    assert "security" not in document["paths"]["/api/v1/timeline/events"]["post"]
    page = api.client.get("/docs")
    assert page.status_code == 200
    assert "/api/v1/openapi.json" in page.text
    # Its scripts come from this server, not from a CDN.
    assert "/docs/assets/swagger-ui-bundle.js" in page.text and "cdn" not in page.text
    script = api.client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.text
    # What it describes still needs a token.
    assert api.client.get("/api/v1/incidents").status_code == 401
    assert api.client.get("/api/v1/whoami").status_code == 401


def test_nul_characters_are_refused_without_harming_the_rest_of_a_batch(api: Api) -> None:
    resp = api.post_batch([event(1), event(2, imactor="bad\u0000actor"), event(3)])
    assert resp.status_code == 200
    assert [r["status"] for r in resp.json()["results"]] == [201, 400, 201]
    assert "NUL" in resp.json()["results"][1]["detail"]
    single = api.post_event(event(4, source="im://te\u0000sts"))
    assert single.status_code == 400
    assert [e["id"] for e in _all(api)] == ["evt-1", "evt-3"]
