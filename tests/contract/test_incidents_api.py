"""Incident REST contract: declare, list, read, change, lifecycle, merge and families.

Runs on SQLite and PostgreSQL. Each test talks HTTP to the real app with real tokens
and policy decisions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from incidents.app import Container, build_container, create_app
from tests.conftest import grant_access, make_settings

COMMANDER = ("incident.commander",)
RESPONDER = ("incident.responder",)
READER = ("incident.reader",)


@dataclass
class Site:
    client: TestClient
    container: Container
    tokens: dict[str, str]

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def post(self, path: str, body: Any = None, who: str = "cora", **headers: str) -> Any:
        return self.client.post(f"/api/v1{path}", json=body, headers={**self.as_(who), **headers})

    def patch(self, path: str, body: Any, who: str = "cora") -> Any:
        return self.client.patch(f"/api/v1{path}", json=body, headers=self.as_(who))

    def get(self, path: str, who: str = "cora", **params: Any) -> Any:
        return self.client.get(f"/api/v1{path}", params=params, headers=self.as_(who))

    def declare(self, title: str = "Checkout errors", who: str = "cora", **fields: Any) -> Any:
        response = self.post("/incidents", {"title": title, **fields}, who=who)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def site(database_url: str) -> Iterator[Site]:
    container = build_container(make_settings(database_url))
    users = {
        # Commander with every attribute: sees and may do everything.
        "cora": ("cora@example.com", COMMANDER, True),
        # Responder with every attribute.
        "rob": ("rob@example.com", RESPONDER, True),
        # Reader of public incidents only.
        "rita": ("rita@example.com", READER, False),
        # A user who may append events but not read incidents.
        "tim": ("tim@example.com", ("timeline.writer",), True),
    }
    tokens = {}
    for name, (email, roles, all_attributes) in users.items():
        if all_attributes:
            grant_access(container, email, roles)
        else:
            grant_access(container, email, roles, attributes=())
        _, tokens[name] = container.tokens.create(email)
    with TestClient(create_app(container)) as client:
        yield Site(client, container, tokens)


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


def _types(site: Site, incident_id: str) -> list[str]:
    events = site.get(f"/incidents/{incident_id}/timeline", limit=1000).json()["events"]
    return [e["event_type"] for e in events]


def test_declare_allocates_numbers_and_records_the_declare_event(site: Site) -> None:
    first = site.declare(
        "Checkout errors", severity="sev2", service="checkout", labels={"team": "pay"}
    )
    second = site.declare("Search slow")
    assert first["id"] == "INC-1" and second["id"] == "INC-2"
    assert first["severity"] == "SEV-2" and first["status"] == "open"
    assert first["service"] == "checkout" and first["labels"] == {"team": "pay"}
    assert first["declared_by"] == "cora@example.com"
    assert first["allowed_transitions"] == ["mitigated", "resolved", "canceled"]
    assert _types(site, "INC-1") == ["im.incident.declare"]
    fetched = site.get("/incidents/INC-1").json()
    assert fetched == first


def test_idempotency_key_declares_once(site: Site) -> None:
    one = site.post("/incidents", {"title": "Disk full"}, **{"Idempotency-Key": "k-1"})
    two = site.post("/incidents", {"title": "Disk full"}, **{"Idempotency-Key": "k-1"})
    assert one.status_code == 201 and two.status_code == 200
    assert two.headers["Idempotent-Replayed"] == "true"
    assert one.json()["id"] == two.json()["id"]
    # The key is the caller's own: someone else's same key is a new incident.
    three = site.post("/incidents", {"title": "Disk full"}, who="rob", **{"Idempotency-Key": "k-1"})
    assert three.status_code == 201 and three.json()["id"] != one.json()["id"]


def test_lifecycle_moves_record_their_event_types_and_figures(site: Site) -> None:
    site.declare()
    ack = site.post("/incidents/INC-1/acknowledge", {"note": "on it"}, who="rob")
    assert ack.status_code == 200, ack.text
    assert ack.json()["incident"]["acknowledged_by"] == "rob@example.com"
    assert ack.json()["incident"]["status"] == "open"
    for status in ("mitigated", "resolved", "open", "resolved"):
        response = site.post("/incidents/INC-1/status", {"status": status, "reason": "x"})
        assert response.status_code == 200, response.text
        assert response.json()["incident"]["status"] == status
    closed = site.post("/incidents/INC-1/status", {"status": "closed"})
    incident = closed.json()["incident"]
    assert incident["status"] == "closed" and incident["closed_at"]
    assert incident["time_to_acknowledge_seconds"] is not None
    assert incident["time_to_resolve_seconds"] is not None
    assert incident["allowed_transitions"] == []
    assert _types(site, "INC-1") == [
        "im.incident.declare",
        "im.incident.acknowledge",
        "im.incident.mitigate",
        "im.incident.resolve",
        "im.incident.reopen",
        "im.incident.resolve",
        "im.incident.close",
    ]


def test_an_invalid_transition_is_a_409_listing_the_allowed_moves(site: Site) -> None:
    site.declare()
    body = _problem(site.post("/incidents/INC-1/status", {"status": "closed"}), 409)
    assert body["current_status"] == "open"
    assert body["allowed_transitions"] == ["mitigated", "resolved", "canceled"]
    assert "Allowed from open" in body["detail"]
    assert site.get("/incidents/INC-1").json()["status"] == "open"
    _problem(site.post("/incidents/INC-1/status", {"status": "sideways"}), 422)


def test_drafts_open_or_cancel(site: Site) -> None:
    draft = site.declare("Maybe an outage", status="draft")
    assert draft["status"] == "draft"
    assert draft["allowed_transitions"] == ["open", "canceled"]
    moved = site.post(f"/incidents/{draft['id']}/status", {"status": "canceled"})
    assert moved.json()["incident"]["status"] == "canceled"


def test_escalate_raises_severity_then_tier(site: Site) -> None:
    site.declare(severity="SEV-2")
    one = site.post("/incidents/INC-1/escalate", None).json()["incident"]
    assert one["severity"] == "SEV-1" and one["tier"] == 1
    two = site.post("/incidents/INC-1/escalate", {}).json()["incident"]
    assert two["severity"] == "SEV-1" and two["tier"] == 2
    body = _problem(site.post("/incidents/INC-1/escalate", {"severity": "SEV-3"}), 409)
    assert "must raise" in body["detail"]
    assert _types(site, "INC-1").count("im.incident.escalate") == 2


def test_patch_assign_roles_and_notes(site: Site) -> None:
    site.declare()
    patched = site.patch("/incidents/INC-1", {"title": "Checkout 500s", "labels": {"a": "b"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "Checkout 500s"
    unchanged = site.patch("/incidents/INC-1", {"title": "Checkout 500s"})
    assert unchanged.status_code == 200
    _problem(site.patch("/incidents/INC-1", {"status": "closed"}), 422)
    _problem(site.patch("/incidents/INC-1", {"title": None}), 422)

    assigned = site.post("/incidents/INC-1/assign", {"add": ["rob@example.com", "amy@example.com"]})
    assert assigned.json()["incident"]["assignees"] == ["rob@example.com", "amy@example.com"]
    removed = site.post("/incidents/INC-1/assign", {"remove": ["amy@example.com"]})
    assert removed.json()["incident"]["assignees"] == ["rob@example.com"]

    role = site.post("/incidents/INC-1/roles", {"role": "commander", "user": "cora@example.com"})
    assert role.json()["incident"]["commander"] == "cora@example.com"
    scribe = site.post("/incidents/INC-1/roles", {"role": "scribe", "user": "rob@example.com"})
    assert scribe.json()["incident"]["roles"] == {
        "commander": "cora@example.com",
        "scribe": "rob@example.com",
    }
    cleared = site.post("/incidents/INC-1/roles", {"role": "scribe"})
    assert "scribe" not in cleared.json()["incident"]["roles"]

    note = site.post("/incidents/INC-1/notes", {"text": "Rolled back 4.2"})
    assert note.status_code == 201
    assert set(note.json()) == {"event_id", "incident_id", "position"}
    assert site.get("/incidents/INC-1").json()["notes"] == 1
    assert _types(site, "INC-1") == [
        "im.incident.declare",
        "im.incident.update",
        "im.incident.assign",
        "im.incident.assign",
        "im.incident.role.assign",
        "im.incident.role.assign",
        "im.incident.role.assign",
        "im.note.add",
    ]


def test_list_filters_and_pages_newest_first(site: Site) -> None:
    for n in range(7):
        site.declare(
            f"{'Checkout' if n % 2 else 'Search'} outage {n}",
            severity=f"SEV-{n % 4 + 1}",
            service="checkout" if n % 2 else "search",
            labels={"team": "pay"} if n < 3 else {},
        )
    site.post("/incidents/INC-2/status", {"status": "resolved"})
    site.post("/incidents/INC-3/roles", {"role": "commander", "user": "rob@example.com"})

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = site.get("/incidents", **params).json()
        seen += [i["id"] for i in page["incidents"]]
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert seen == [f"INC-{n}" for n in range(7, 0, -1)]

    def ids(**params: Any) -> list[str]:
        response = site.get("/incidents", **params)
        assert response.status_code == 200, response.text
        return [i["id"] for i in response.json()["incidents"]]

    assert ids(status="resolved") == ["INC-2"]
    assert ids(status=["open", "resolved"], service="checkout") == ["INC-6", "INC-4", "INC-2"]
    assert ids(severity="SEV-1") == ["INC-5", "INC-1"]
    assert ids(commander="rob@example.com") == ["INC-3"]
    assert ids(label="team=pay") == ["INC-3", "INC-2", "INC-1"]
    assert ids(label=["team=pay"], q="SEARCH") == ["INC-3", "INC-1"]
    assert ids(q="100%") == []

    _problem(site.get("/incidents", status="bogus"), 400)
    _problem(site.get("/incidents", limit=0), 400)
    _problem(site.get("/incidents", cursor="garbage"), 400)
    page = site.get("/incidents", limit=1).json()
    body = _problem(site.get("/incidents", limit=1, cursor=page["next_cursor"], q="x"), 400)
    assert "different filters" in body["detail"]


def test_classification_hides_incidents_like_they_do_not_exist(site: Site) -> None:
    site.declare("Public outage")
    secret = site.declare("Breach", classification="confidential")
    assert site.get(f"/incidents/{secret['id']}", who="rita").status_code == 404
    assert [i["id"] for i in site.get("/incidents", who="rita").json()["incidents"]] == ["INC-1"]
    missing = site.get("/incidents/INC-99", who="rita")
    hidden = site.get(f"/incidents/{secret['id']}", who="rita")
    assert missing.json()["title"] == hidden.json()["title"]
    # A commander without the attribute cannot act on it either.
    assert site.get("/incidents/INC-2").status_code == 200


def test_each_action_needs_its_role(site: Site) -> None:
    site.declare()
    body = _problem(site.post("/incidents", {"title": "x"}, who="rita"), 403)
    assert body["missing_role"] == "incident.responder"
    _problem(site.post("/incidents/INC-1/notes", {"text": "x"}, who="rita"), 403)
    _problem(site.get("/incidents", who="tim"), 403)
    assert site.get("/incidents/INC-1", who="rita").status_code == 200
    # Responders act but only commanders close or merge.
    site.post("/incidents/INC-1/status", {"status": "resolved"}, who="rob")
    body = _problem(site.post("/incidents/INC-1/status", {"status": "closed"}, who="rob"), 403)
    assert body["missing_role"] == "incident.commander"
    assert site.post("/incidents/INC-1/status", {"status": "closed"}).status_code == 200
    assert site.client.get("/api/v1/incidents").status_code == 401


def test_merge_cancels_the_duplicate_and_both_timelines_record_it(site: Site) -> None:
    site.declare("Checkout errors (PagerDuty)")
    site.declare("Checkout errors (Alertmanager)")
    merged = site.post("/incidents/INC-2/merge", {"into": "INC-1", "reason": "same failure"})
    assert merged.status_code == 200, merged.text
    duplicate = merged.json()["incident"]
    assert duplicate["status"] == "canceled" and duplicate["merged_into"] == "INC-1"
    target = site.get("/incidents/INC-1").json()
    assert target["merged_from"] == ["INC-2"] and target["status"] == "open"
    assert _types(site, "INC-1")[-1] == "im.incident.merge"
    assert _types(site, "INC-2")[-1] == "im.incident.merge"
    family = site.get("/incidents/INC-1/related").json()
    assert [i["id"] for i in family["merged_from"]] == ["INC-2"]
    _problem(site.post("/incidents/INC-2/merge", {"into": "INC-1"}), 409)
    _problem(site.post("/incidents/INC-1/merge", {"into": "INC-1"}), 422)
    _problem(site.post("/incidents/INC-1/merge", {"into": "INC-404"}), 404)
    _problem(site.post("/incidents/INC-1/merge", {"into": "INC-2"}, who="rob"), 403)


def test_families_through_parent_and_related_links(site: Site) -> None:
    site.declare("Region outage")
    child = site.declare("Checkout down", parent_id="INC-1")
    site.declare("Payments down")
    assert child["parent_id"] == "INC-1"
    linked = site.post("/incidents/INC-3/link", {"parent_id": "INC-1", "related": ["INC-2"]})
    assert linked.status_code == 200, linked.text
    family = site.get("/incidents/INC-1/related").json()
    assert [i["id"] for i in family["children"]] == ["INC-2", "INC-3"]
    sibling = site.get("/incidents/INC-2/related").json()
    assert sibling["parent"]["id"] == "INC-1"
    assert [i["id"] for i in sibling["related"]] == ["INC-3"]
    _problem(site.post("/incidents/INC-3/link", {}), 422)
    _problem(site.post("/incidents/INC-3/link", {"related": ["INC-3"]}), 422)
    _problem(site.post("/incidents", {"title": "x", "parent_id": "INC-77"}), 404)
    # A hidden relative is left out of the family.
    site.declare("Secret child", parent_id="INC-1", classification="confidential")
    assert [
        i["id"] for i in site.get("/incidents/INC-1/related", who="rita").json()["children"]
    ] == [
        "INC-2",
        "INC-3",
    ]
    # Nor does a visible incident's document name it, to a reader who may not see it.
    linked = site.post("/incidents/INC-2/link", {"related": ["INC-4"]})
    assert linked.status_code == 200, linked.text
    assert "INC-4" in site.get("/incidents/INC-2").json()["related"]
    assert site.get("/incidents/INC-2", who="rita").json()["related"] == ["INC-3"]
    listed = site.get("/incidents", who="rita").json()["incidents"]
    assert {i["id"] for i in listed} == {"INC-1", "INC-2", "INC-3"}
    assert all("INC-4" not in i["related"] for i in listed)
    site.declare("Secret parent", classification="confidential")
    assert site.post("/incidents/INC-3/link", {"parent_id": "INC-5"}).status_code == 200
    assert site.get("/incidents/INC-3").json()["parent_id"] == "INC-5"
    assert site.get("/incidents/INC-3", who="rita").json()["parent_id"] is None
    rita_family = site.get("/incidents/INC-2/related", who="rita").json()
    assert [i["id"] for i in rita_family["related"]] == ["INC-3"]
    assert rita_family["related"][0]["parent_id"] is None


def test_bad_bodies_are_problems_and_change_nothing(site: Site) -> None:
    site.declare()
    cases = [
        ("/incidents", {"title": ""}, 422),
        ("/incidents", {"title": "x", "severity": "SEV-9"}, 422),
        ("/incidents", {"title": "x", "classification": "top"}, 422),
        ("/incidents", {"title": "x", "colour": "red"}, 422),
        ("/incidents", [1, 2], 422),
        ("/incidents/INC-1/status", {}, 422),
        ("/incidents/INC-1/assign", {}, 422),
        ("/incidents/INC-1/roles", {"role": "Bad Role!"}, 422),
        ("/incidents/INC-1/notes", {"text": ""}, 422),
        ("/incidents/INC-9/notes", {"text": "x"}, 404),
        ("/incidents/INC-9/acknowledge", {}, 404),
    ]
    for path, body, status in cases:
        _problem(site.post(path, body), status)
    raw = site.client.post(
        "/api/v1/incidents",
        content=b"{not json",
        headers={**site.as_("cora"), "Content-Type": "application/json"},
    )
    _problem(raw, 422)
    assert [i["id"] for i in site.get("/incidents").json()["incidents"]] == ["INC-1"]
    assert _types(site, "INC-1") == ["im.incident.declare"]


def test_commands_arriving_as_events_in_the_alias_spelling_update_the_incident(site: Site) -> None:
    site.declare()
    response = site.client.post(
        "/api/v1/timeline/events",
        json={
            "specversion": "1.0",
            "id": "chat-ack-1",
            "source": "chat://slack",
            "type": "com.incidents.assigned.v1",
            "subject": "incident/INC-1",
            "data": {"user": "sam@example.com"},
        },
        headers={**site.as_("cora"), "Content-Type": "application/cloudevents+json"},
    )
    assert response.status_code == 201, response.text
    assert site.get("/incidents/INC-1").json()["assignees"] == ["sam@example.com"]
    assert _types(site, "INC-1") == ["im.incident.declare", "im.incident.assign"]


def test_incident_events_appended_directly_need_the_same_roles(site: Site) -> None:
    site.declare(classification="restricted")

    def append(who: str, *events: dict[str, Any]) -> Any:
        return site.client.post(
            "/api/v1/timeline/events",
            content=orjson.dumps(list(events)),
            headers={**site.as_(who), "Content-Type": "application/cloudevents-batch+json"},
        )

    def raw(n: int, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": f"raw-{n}",
            "source": "chat://slack",
            "type": type_,
            "subject": "incident/INC-1",
            "data": data,
        }

    # A timeline writer alone may add notes, but not reclassify the incident.
    answer = append(
        "tim",
        raw(1, "im.incident.update", {"changes": {"classification": "public"}}),
        raw(2, "im.note.add", {"text": "still looking"}),
    ).json()
    assert [r["status"] for r in answer["results"]] == [403, 201]
    assert answer["results"][0]["missing_role"] == "incident.responder"
    # A responder may change it but not close it; a commander may.
    resolved = append("rob", raw(3, "im.incident.resolve", {})).json()
    assert resolved["results"][0]["status"] == 201
    closing = raw(4, "com.incidents.closed.v1", {})
    assert append("rob", closing).json()["results"][0]["missing_role"] == "incident.commander"
    assert append("cora", closing).json()["results"][0]["status"] == 201
    incident = site.get("/incidents/INC-1").json()
    assert incident["classification"] == "restricted" and incident["status"] == "closed"
