"""Retention through the HTTP API: legal holds, 409 on archived incidents, erasures,
tombstones in verify."""

from __future__ import annotations

from typing import Any

from incidents.events.envelope import normalize
from incidents.events.timeformat import format_micros, now_micros
from incidents.log.session import Outcome
from incidents.retention.tiers import DAY_US
from tests.conftest import Api, event, grant_access

COUNSEL = "counsel@example.com"
PROBLEM = "application/problem+json"


def _token(api: Api, email: str, roles: tuple[str, ...]) -> dict[str, str]:
    grant_access(api.container, email, roles=roles)
    _, token = api.container.tokens.create(email)
    return {"Authorization": f"Bearer {token}"}


def _old(api: Api, incident: str, n: int, age_days: float) -> None:
    when = now_micros() - int(age_days * DAY_US)
    for i in range(n):
        response = api.post_event(
            event(f"{incident}-{i}", incident=incident, time=format_micros(when + i))
        )
        assert response.status_code == 201, response.text


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    return body


def test_legal_hold_needs_its_own_role_and_a_reason(api: Api) -> None:
    _old(api, "INC-7", 2, age_days=3000)
    path = "/api/v1/incidents/INC-7/legal-hold"
    # alice has every incident role but not the compliance one.
    body = _problem(api.client.post(path, json={"reason": "x"}, headers=api.auth), 403)
    assert body["missing_role"] == "compliance.officer"
    counsel = _token(api, COUNSEL, ("compliance.officer",))
    body = _problem(api.client.post(path, json={"reason": ""}, headers=counsel), 422)
    assert "reason" in str(body)
    placed = api.client.post(path, json={"reason": "litigation hold 17"}, headers=counsel)
    assert placed.status_code == 201
    assert placed.json()["reason"] == "litigation hold 17"
    assert placed.json()["placed_by"] == COUNSEL
    _problem(api.client.post(path, json={"reason": "again"}, headers=counsel), 409)
    listed = api.client.get("/api/v1/retention/holds", headers=counsel).json()["holds"]
    assert [h["incident_id"] for h in listed] == ["INC-7"]
    assert listed[0]["reason"] == "litigation hold 17"
    # The reason is legal_hold data: redacted for those without legal_hold_access, in
    # the holds list and on the timeline alike.
    grant_access(api.container, "clerk@example.com", roles=("compliance.officer",), attributes=())
    _, clerk_token = api.container.tokens.create("clerk@example.com")
    clerk = {"Authorization": f"Bearer {clerk_token}"}
    hidden = api.client.get("/api/v1/retention/holds", headers=clerk).json()["holds"]
    assert hidden[0]["reason"] != "litigation hold 17"
    entries = api.client.get("/api/v1/incidents/INC-7/timeline", headers=clerk).json()["events"]
    assert "litigation hold 17" not in str(entries)
    assert "litigation hold 17" in str(api.get("/api/v1/incidents/INC-7/timeline").json())
    plan = api.client.get("/api/v1/retention/plan", headers=counsel).json()["incidents"]
    assert plan == [
        {
            "incident_id": "INC-7",
            "tier": "recent",
            "action": "keep",
            "rule": "legal-hold",
            "reason": plan[0]["reason"],
        }
    ]
    # The hold is an event on the incident's timeline.
    events = api.get("/api/v1/incidents/INC-7/timeline").json()["events"]
    types = [e["event_type"] for e in events]
    assert types[-1] == "im.retention.hold.place"
    missing = _problem(api.client.delete(path, headers=counsel), 400)
    assert missing["errors"][0]["field"] == "reason"
    released = api.client.delete(path, params={"reason": "case closed"}, headers=counsel)
    assert released.status_code == 200 and released.json()["held"] is False
    _problem(api.client.delete(path, params={"reason": "again"}, headers=counsel), 409)
    _problem(
        api.client.post(
            "/api/v1/incidents/INC-NONE/legal-hold", json={"reason": "x"}, headers=counsel
        ),
        404,
    )


def test_hold_events_cannot_be_appended_without_the_role(api: Api) -> None:
    _old(api, "INC-7", 1, age_days=3000)
    response = api.post_event(
        event("sneaky", incident="INC-7", type_="im.retention.hold.release", data={"reason": "x"})
    )
    assert _problem(response, 403)["missing_role"] == "compliance.officer"


def test_an_archived_incident_reads_the_same_and_refuses_writes(api: Api) -> None:
    declared = api.client.post(
        "/api/v1/incidents", json={"title": "Checkout down", "severity": "SEV-2"}, headers=api.auth
    )
    assert declared.status_code == 201, declared.text
    incident = declared.json()["id"]
    for status in ("resolved", "closed"):
        moved = api.client.post(
            f"/api/v1/incidents/{incident}/status", json={"status": status}, headers=api.auth
        )
        assert moved.status_code == 200, moved.text
    export_path = f"/api/v1/incidents/{incident}/timeline/export"
    before = api.get(export_path, format="json").content
    timeline_before = api.get(f"/api/v1/incidents/{incident}/timeline").json()
    retention = api.container.retention
    assert retention is not None
    report = retention.run(now_us=now_micros() + 100 * DAY_US)
    assert incident in report.archived
    assert api.get(export_path, format="json").content == before
    assert api.get(f"/api/v1/incidents/{incident}/timeline").json() == timeline_before
    verified = api.get(f"/api/v1/incidents/{incident}/timeline/verify").json()
    assert verified["intact"] is True and verified["events"] == 3
    assert api.get(f"/api/v1/incidents/{incident}").status_code == 200
    # An archived event is still found by its id.
    first = timeline_before["events"][0]
    fetched = api.get(f"/api/v1/timeline/events/{first['id']}")
    assert fetched.status_code == 200, fetched.text
    body = _problem(
        api.client.post(
            f"/api/v1/incidents/{incident}/notes", json={"text": "late"}, headers=api.auth
        ),
        409,
    )
    assert body["incident_id"] == incident and "archived" in body["detail"]
    _problem(api.post_event(event("late", incident=incident)), 409)
    batch = api.post_batch([event("late-1", incident=incident), event("other", incident="INC-X")])
    results = batch.json()["results"]
    assert [r["status"] for r in results] == [409, 201]
    # A hold may still be placed on an archived incident.
    counsel = _token(api, COUNSEL, ("compliance.officer",))
    placed = api.client.post(
        f"/api/v1/incidents/{incident}/legal-hold", json={"reason": "audit"}, headers=counsel
    )
    assert placed.status_code == 201
    assert api.get(f"/api/v1/incidents/{incident}/timeline/verify").json()["intact"] is True


def test_purged_incident_verify_shows_the_tombstone(api: Api) -> None:
    _old(api, "INC-OLD", 3, age_days=3000)
    retention = api.container.retention
    assert retention is not None
    retention.run()
    body = api.get("/api/v1/incidents/INC-OLD/timeline/verify").json()
    assert body["intact"] is True and body["events"] == 0
    (stone,) = body["tombstones"]
    assert stone["kind"] == "purge" and stone["event_count"] == 3
    assert stone["chain_tip"] == body["head_hash"]
    listed = api.get("/api/v1/incidents/INC-OLD/tombstones").json()["tombstones"]
    assert listed == body["tombstones"]
    assert api.get("/api/v1/incidents/INC-NONE/tombstones").status_code == 404


def test_erasure_endpoint(api: Api) -> None:
    response = api.post_event(
        event("pii", incident="INC-9", data={"reporter_email": "jane@example.com", "n": 1})
    )
    position = response.json()["position"]
    path = "/api/v1/incidents/INC-9/erasures"
    payload = {"position": position, "fields": ["reporter_email"], "reason": "GDPR 42"}
    _problem(api.client.post(path, json=payload, headers=api.auth), 403)
    dpo = _token(api, "dpo@example.com", ("compliance.officer",))
    missing = {**payload, "fields": ["nope"]}
    assert "nope" in _problem(api.client.post(path, json=missing, headers=dpo), 422)["detail"]
    _problem(api.client.post(path, json={**payload, "position": 0}, headers=dpo), 422)
    done = api.client.post(path, json=payload, headers=dpo)
    assert done.status_code == 201 and done.json()["kind"] == "erasure"
    # alice may read PII: what she no longer sees is gone, not redacted.
    stored = api.get("/api/v1/timeline/events/evt-pii")
    assert stored.status_code == 200
    assert "[ERASED]" in stored.text and "jane@example.com" not in stored.text
    assert api.get("/api/v1/incidents/INC-9/timeline/verify").json()["intact"] is True
    # Under legal hold nothing may be erased.
    api.post_event(event("pii-2", incident="INC-9", data={"reporter_email": "x@example.com"}))
    counsel = _token(api, COUNSEL, ("compliance.officer",))
    placed = api.client.post(
        "/api/v1/incidents/INC-9/legal-hold", json={"reason": "audit"}, headers=counsel
    )
    assert placed.status_code == 201
    held = {**payload, "position": position + 1}
    body = _problem(api.client.post(path, json=held, headers=dpo), 409)
    assert "legal hold" in body["detail"]


def test_an_archived_event_sent_again_is_a_duplicate(api: Api) -> None:
    when = now_micros() - 200 * DAY_US
    sent = [event(f"arch-{i}", incident="INC-ARCH", time=format_micros(when + i)) for i in range(3)]
    for raw in sent:
        assert api.post_event(raw).status_code == 201
    retention = api.container.retention
    assert retention is not None
    report = retention.run()
    assert "INC-ARCH" in report.archived
    head = api.container.reader.head_position()

    again = api.post_event(sent[1])
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    batch = api.post_batch([sent[0], sent[2], event("arch-new", incident="INC-ARCH")])
    assert [r["status"] for r in batch.json()["results"]] == [200, 200, 409]
    # Different content under an archived key: the usual conflict, nothing stored.
    changed = {**sent[0], "data": {"note": "something else"}}
    _problem(api.post_event(changed), 409)
    # Appended in-process (no HTTP refusal in front): still a duplicate.
    (result,) = api.container.timeline.append([normalize(sent[2])], "alice@example.com")
    assert result.outcome is Outcome.DUPLICATE
    assert api.container.reader.head_position() == head
    verified = api.get("/api/v1/incidents/INC-ARCH/timeline/verify").json()
    assert verified["intact"] is True and verified["events"] == 3
