"""A field erasure rewrites the incident's projections in the same transaction: no
read path shows the erased value afterwards, and a full rebuild gives the same rows."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from incidents.retention.erasure import ErasureError, check_erasable
from tests.conftest import Api, event, grant_access

TITLE = "Checkout down for MARKER-TITLE-7c1"
DESCRIPTION = "Reported by MARKER-DESC-7c1"
NOTE = "Customer MARKER-NOTE-7c1 called twice"
MARKERS = ("MARKER-TITLE-7c1", "MARKER-DESC-7c1", "MARKER-NOTE-7c1")
PROJECTION_TABLES = ("incidents", "incident_labels", "alerts", "correlation_groups", "boards")
GRAPHQL = """
query One($id: ID!) {
  incident(id: $id) { id title description timeline(limit: 20) { data }
    statusBoard(persona: COMMANDER) { sections } }
  incidents(limit: 20) { items { id title } }
}
"""


def _dpo(api: Api) -> dict[str, str]:
    grant_access(api.container, "dpo@example.com", roles=("compliance.officer",))
    _, token = api.container.tokens.create("dpo@example.com")
    return {"Authorization": f"Bearer {token}"}


def _projection_rows(api: Api) -> dict[str, list[Any]]:
    engine = api.container.engine
    with engine.connect() as conn:
        return {
            table: sorted(
                (tuple(bytes(v) if isinstance(v, memoryview) else v for v in row))
                for row in conn.execute(text(f"SELECT * FROM {table}"))
            )
            for table in PROJECTION_TABLES
        }


def _reads(api: Api, incident: str) -> dict[str, str]:
    """Every read path that shows the incident, as text."""
    paths = {
        "incident": f"/api/v1/incidents/{incident}",
        "list": "/api/v1/incidents",
        "board": f"/api/v1/incidents/{incident}/board",
        "boards": "/api/v1/boards",
        "timeline": f"/api/v1/incidents/{incident}/timeline",
        "export": f"/api/v1/incidents/{incident}/timeline/export?format=json",
        "export-md": f"/api/v1/incidents/{incident}/timeline/export?format=md",
    }
    out = {}
    for name, path in paths.items():
        response = api.client.get(path, headers=api.auth)
        assert response.status_code == 200, (name, response.text)
        out[name] = response.text
    graphql = api.client.post(
        "/graphql", json={"query": GRAPHQL, "variables": {"id": incident}}, headers=api.auth
    )
    assert graphql.status_code == 200 and "errors" not in graphql.json(), graphql.text
    out["graphql"] = graphql.text
    return out


def _position(api: Api, incident: str, event_type: str) -> int:
    events = api.get(f"/api/v1/incidents/{incident}/timeline").json()["events"]
    (found,) = [e for e in events if e["event_type"] == event_type]
    position: int = found["position"]
    return position


def test_erasure_leaves_no_read_showing_the_value_and_rebuild_equals_live(api: Api) -> None:
    declared = api.client.post(
        "/api/v1/incidents",
        json={"title": TITLE, "description": DESCRIPTION, "severity": "SEV-2"},
        headers=api.auth,
    )
    assert declared.status_code == 201, declared.text
    incident = declared.json()["id"]
    noted = api.client.post(
        f"/api/v1/incidents/{incident}/notes", json={"text": NOTE}, headers=api.auth
    )
    assert noted.status_code == 201, noted.text
    before = _reads(api, incident)
    # Every marker is shown somewhere before the erasure (else the search proves nothing).
    for marker in MARKERS:
        assert any(marker in body for body in before.values()), marker
    assert NOTE in before["board"]

    dpo = _dpo(api)
    erasures = f"/api/v1/incidents/{incident}/erasures"
    for event_type, fields in (
        ("im.incident.declare", ["title", "description"]),
        ("im.note.add", ["text"]),
    ):
        payload = {
            "position": _position(api, incident, event_type),
            "fields": fields,
            "reason": "GDPR request 17",
        }
        done = api.client.post(erasures, json=payload, headers=dpo)
        assert done.status_code == 201, done.text

    after = _reads(api, incident)
    for name, body in after.items():
        for marker in MARKERS:
            assert marker not in body, (name, marker)
    assert "[ERASED]" in after["incident"] and "[ERASED]" in after["board"]
    verified = api.get(f"/api/v1/incidents/{incident}/timeline/verify").json()
    assert verified["intact"] is True

    live = _projection_rows(api)
    api.container.incidents.rebuild()
    assert _projection_rows(api) == live


def test_erasure_of_an_alert_document_rewrites_the_alert_row(api: Api) -> None:
    alert = {"alert": {"key": "db-1", "summary": "Disk full, MARKER-NOTE-7c1", "severity": "P2"}}
    stored = api.post_event(
        event("alert-1", incident="INC-ALERT", type_="im.alert.trigger", data=alert)
    )
    assert stored.status_code == 201, stored.text
    position = stored.json()["position"]
    assert "MARKER-NOTE-7c1" in api.get("/api/v1/alerts").text
    dpo = _dpo(api)
    erasures = "/api/v1/incidents/INC-ALERT/erasures"
    refused = api.client.post(
        erasures,
        json={"position": position, "fields": ["alert.key"], "reason": "GDPR"},
        headers=dpo,
    )
    assert refused.status_code == 422 and "identifies" in refused.json()["detail"]
    done = api.client.post(
        erasures,
        json={"position": position, "fields": ["alert.summary"], "reason": "GDPR"},
        headers=dpo,
    )
    assert done.status_code == 201, done.text
    assert "MARKER-NOTE-7c1" not in api.get("/api/v1/alerts").text
    live = _projection_rows(api)
    api.container.incidents.rebuild()
    assert _projection_rows(api) == live


@pytest.mark.parametrize(
    ("event_type", "path"),
    [
        ("im.alert.trigger", "alert"),
        ("im.alert.resolve", "correlation.groups"),
        ("im.incident.merge", "into"),
    ],
)
def test_identifying_fields_cannot_be_erased(event_type: str, path: str) -> None:
    with pytest.raises(ErasureError, match="identifies"):
        check_erasable(event_type, [path])
    check_erasable("im.note.add", [path])
