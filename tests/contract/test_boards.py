"""Status boards over HTTP and GraphQL: persona views, policy, redaction, rebuilds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text, update

from incidents.policy.model import ATTRIBUTES, CLEARANCE_LEVELS
from incidents.store.engine import writes
from incidents.store.schema import boards, timeline_events
from tests.conftest import event
from tests.contract.site import Site, running_site

PERSONAS = ("responder", "commander", "executive", "customer", "compliance")
BOARD_READER = ("timeline.reader", "timeline.exporter", "incident.reader")
WRITER = ("timeline.reader", "timeline.writer", "timeline.exporter", "incident.commander")


@pytest.fixture
def site(database_url: str) -> Iterator[Site]:
    yield from running_site(database_url, BOARD_READER)


def _declare(site: Site, headers: dict[str, str], **fields: Any) -> str:
    body = {"title": "Checkout errors", "severity": "SEV-2", "service": "checkout", **fields}
    resp = site.client.post("/api/v1/incidents", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    incident_id: str = resp.json()["id"]
    return incident_id


def _sensitive(incident: str) -> list[dict[str, Any]]:
    """Notes carrying markers that only some readers may see."""
    return [
        event("pub", incident=incident, data={"title": "Public", "note": "MK-PUBLIC"}),
        event("restr", incident=incident, imvisibility="restricted", data={"note": "MK-RESTR"}),
        event("conf", incident=incident, imvisibility="confidential", data={"note": "MK-CONF"}),
        event("phi", incident=incident, imdataclass=["phi"], data={"title": "MK-PHI"}),
        event(
            "pii",
            incident=incident,
            imdataclass={"pii": ["customer.email"]},
            data={"customer": {"email": "MK-PII"}},
        ),
        event("rule", incident=incident, data={"reporter_email": "MK-PII-RULE"}),
        event("fin", incident=incident, imdataclass="financial", data={"content": "MK-FIN"}),
        event(
            "update",
            incident=incident,
            type_="im.status_update.post",
            data={
                "title": "Update",
                "message": "MK-UPDATE",
                "next_update_at": "2030-01-01T00:00:00Z",
            },
        ),
        event(
            "alert",
            incident=incident,
            type_="im.alert.trigger",
            imvisibility="restricted",
            data={"alert": {"key": "am:MK-ALERTKEY", "summary": "MK-ALERT"}},
        ),
    ]


_CLASS = {
    "MK-PHI": "phi_access",
    "MK-PII": "pii_access",
    "MK-PII-RULE": "pii_access",
    "MK-FIN": "financial_access",
}
_LEVEL = {"MK-RESTR": "restricted", "MK-CONF": "confidential", "MK-ALERT": "restricted"}


def _may_see(marker: str, attributes: set[str], clearance: str | None) -> bool:
    if marker in _CLASS:
        return _CLASS[marker] in attributes
    if marker in _LEVEL:
        level = _LEVEL[marker]
        rank = CLEARANCE_LEVELS.index(clearance) if clearance else 0
        return f"{level}_access" in attributes or rank >= CLEARANCE_LEVELS.index(level)
    return True


@pytest.fixture
def seeded(site: Site) -> tuple[Site, str]:
    writer = site.user(roles=WRITER, attributes=ATTRIBUTES)
    incident = _declare(site, writer, commander="carol@example.com")
    site.append(writer, _sensitive(incident))
    return site, incident


def test_responder_board_shows_state_entries_and_links(seeded: tuple[Site, str]) -> None:
    site, incident = seeded
    full = site.user(attributes=ATTRIBUTES, clearance="secret")
    board = site.board(full, incident, "responder").json()
    assert board["status"] == "open" and board["severity"] == "SEV-2"
    assert board["commander"] == "carol@example.com"
    assert board["impact"]["affected_services"] == ["checkout"]
    types = [e["event_type"] for e in board["key_entries"]]
    assert types[-1] == "im.incident.declare"  # newest first, the declaration last
    assert "im.status_update.post" in types
    assert board["latest_update"]["content"] == "MK-UPDATE"
    assert [e["data"]["alert"]["key"] for e in board["alerts"]["linked"]] == ["am:MK-ALERTKEY"]
    assert board["allowed_transitions"] == ["mitigated", "resolved", "canceled"]
    assert board["events"] == 10


def test_each_persona_has_its_shape(seeded: tuple[Site, str]) -> None:
    site, incident = seeded
    full = site.user(attributes=ATTRIBUTES, clearance="secret")
    commander = site.board(full, incident, "commander").json()
    assert commander["roles"] == {"commander": "carol@example.com"}
    assert "acknowledge the incident" in commander["open_actions"]
    assert commander["next_update_at"] == "2030-01-01T00:00:00Z"
    executive = site.board(full, incident, "executive").json()
    assert executive["summary"].startswith("A major (SEV-2) incident affecting checkout is")
    assert "key_entries" not in executive and executive["duration_seconds"] >= 0
    compliance = site.board(full, incident, "compliance").json()
    assert compliance["data_classes"] == {"financial": 1, "phi": 1, "pii": 1}
    assert compliance["legal_hold"] is False
    assert compliance["chain"]["intact"] is True and compliance["chain"]["events_linked"] == 10
    assert compliance["redacted_classes"] == []
    plain = site.board(site.user(), incident, "compliance").json()
    assert plain["redacted_classes"] == ["financial", "phi", "pii"]
    assert plain["events"] == 7 and plain["events_hidden_by_visibility"] == 3


def test_the_customer_view_names_no_one_and_shows_only_public_events(
    seeded: tuple[Site, str],
) -> None:
    site, incident = seeded
    full = site.user(attributes=ATTRIBUTES, clearance="secret")
    resp = site.board(full, incident, "customer")
    text = resp.text
    board = resp.json()
    assert board["status"] == "investigating" and board["severity"] == "major"
    assert "@example.com" not in text  # no commander, actor or recorder
    assert "MK-RESTR" not in text and "MK-ALERT" not in text
    assert board["latest_update"]["content"] == "MK-UPDATE"
    assert {e["event_type"] for e in board["updates"]} <= {
        "im.incident.declare",
        "im.status_update.post",
    }
    # A restricted incident has no public status page at all.
    writer = site.user(roles=WRITER, attributes=ATTRIBUTES)
    hidden = _declare(site, writer, classification="restricted", title="Secret project")
    assert site.board(full, hidden, "customer").status_code == 404
    assert site.board(full, hidden, "responder").status_code == 200
    listed = site.client.get("/api/v1/boards", params={"persona": "customer"}, headers=full)
    assert [b["incident_id"] for b in listed.json()["boards"]] == [incident]
    # The responders' description is not a public statement.
    described = _declare(site, writer, description="MK-INTERNAL-DESC db01 failover by bob")
    assert "MK-INTERNAL-DESC" not in site.board(full, described, "customer").text
    assert "MK-INTERNAL-DESC" in site.board(full, described, "responder").text


def test_boards_pass_the_policy_decision(seeded: tuple[Site, str]) -> None:
    site, incident = seeded
    nobody = site.user(roles=())
    resp = site.board(nobody, incident, "responder")
    assert resp.status_code == 403 and resp.json()["missing_role"] == "incident.reader"
    reader = site.user(roles=("incident.reader",))
    resp = site.board(reader, incident, "compliance")
    assert resp.status_code == 403 and resp.json()["missing_role"] == "timeline.exporter"
    board = site.board(reader, incident, "responder").json()
    assert board["latest_update"]["content"] == "MK-UPDATE"
    assert site.board(reader, "INC-404", "responder").status_code == 404
    assert site.client.get(f"/api/v1/incidents/{incident}/board").status_code == 401
    bad = site.board(reader, incident, "ceo")
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["errors"][0]["field"] == "persona"


def test_hidden_incidents_look_like_no_incident(site: Site) -> None:
    writer = site.user(roles=WRITER, attributes=ATTRIBUTES)
    incident = _declare(site, writer, classification="confidential")
    plain = site.user()
    assert site.board(plain, incident, "responder").status_code == 404
    listed = site.client.get("/api/v1/boards", headers=plain).json()
    assert listed["boards"] == []
    cleared = site.user(clearance="confidential")
    assert site.board(cleared, incident, "responder").status_code == 200


def _all_boards(site: Site, headers: dict[str, str], incident: str) -> dict[str, str]:
    out = {p: site.board(headers, incident, p).text for p in PERSONAS}
    for p in PERSONAS:
        out[f"all {p}"] = site.client.get(
            "/api/v1/boards", params={"persona": p}, headers=headers
        ).text
    query = (
        "query($id: ID!) { incident(id: $id) { "
        + " ".join(f"{p}: statusBoard(persona: {p.upper()}) {{ board }}" for p in PERSONAS)
        + " } }"
    )
    out["graphql"] = site.client.post(
        "/graphql", json={"query": query, "variables": {"id": incident}}, headers=headers
    ).text
    return out


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    attributes=st.sets(st.sampled_from(ATTRIBUTES)),
    clearance=st.none() | st.sampled_from(CLEARANCE_LEVELS),
)
def test_no_marker_leaks_through_any_board(
    seeded: tuple[Site, str], attributes: set[str], clearance: str | None
) -> None:
    site, incident = seeded
    headers = site.user(attributes=tuple(sorted(attributes)), clearance=clearance)
    outputs = _all_boards(site, headers, incident)
    for marker in [*_CLASS, *_LEVEL, "MK-PUBLIC", "MK-UPDATE"]:
        allowed = _may_see(marker, attributes, clearance)
        for where, output in outputs.items():
            present = f'"{marker}"' in output
            if not allowed:
                assert not present, f"{marker} leaked through {where}"
    assert '"MK-UPDATE"' in outputs["customer"]
    graphql = json.loads(outputs["graphql"])
    assert "errors" not in graphql, graphql
    assert graphql["data"]["incident"]["customer"]["board"]["latest_update"]["content"] == (
        "MK-UPDATE"
    )


def test_a_board_is_a_projection_rebuilt_from_the_log(site: Site) -> None:
    writer = site.user(roles=WRITER, attributes=ATTRIBUTES)
    incident = _declare(site, writer)
    site.append(
        writer, [event(f"n{i}", incident=incident, data={"note": f"n{i}"}) for i in range(60)]
    )
    full = site.user(attributes=ATTRIBUTES, clearance="secret")
    before = site.board(full, incident, "responder").json()
    assert before["events"] == 61 and len(before["key_entries"]) == 20  # bounded
    engine = site.container.engine

    def rows() -> list[Any]:
        with engine.connect() as conn:
            return [
                tuple(r) for r in conn.execute(select(*boards.c).order_by(boards.c.incident_id))
            ]

    live = rows()
    site.container.incidents.rebuild()
    assert rows() == live
    # A stored event changed behind the log's back: the rebuilt board says where.
    with writes(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE timeline_events DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER timeline_events_no_update"))
        conn.execute(
            update(timeline_events)
            .where(timeline_events.c.event_id == "evt-n7")
            .values(actor="mallory@example.com")
        )
    site.container.incidents.rebuild()
    chain = site.board(full, incident, "compliance").json()["chain"]
    assert chain["intact"] is False
    broken = site.client.get(
        f"/api/v1/incidents/{incident}/timeline", params={"limit": 1000}, headers=full
    ).json()["events"]
    assert chain["first_broken_position"] == next(
        e["position"] for e in broken if e["id"] == "evt-n7"
    )
