"""Policy enforcement: roles, visibility, redaction, the PDP failing closed, hot reload."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from regopy import Interpreter

from incidents.app import build_container, create_app
from incidents.policy.decision_point import SHIPPED_POLICIES
from incidents.policy.model import ATTRIBUTES, CLEARANCE_LEVELS
from tests.conftest import event, grant_access, make_settings
from tests.contract.site import Site, running_site

READ = "/api/v1/incidents/INC-P/timeline"
EXPORT = "/api/v1/incidents/INC-P/timeline/export"


def _site(database_url: str, **overrides: Any) -> Iterator[Site]:
    yield from running_site(database_url, **overrides)


@pytest.fixture
def site(database_url: str) -> Iterator[Site]:
    yield from _site(database_url)


# --- roles -------------------------------------------------------------------------------


def test_each_action_needs_its_role_and_the_403_names_it(site: Site) -> None:
    writer = site.user(roles=("timeline.writer",))
    site.append(writer, [event(1, incident="INC-P")])
    reader = site.user(roles=("timeline.reader",))
    nobody = site.user(roles=())

    cases = [
        (reader, "POST", "/api/v1/timeline/events", "timeline.writer"),
        (writer, "GET", READ, "timeline.reader"),
        (writer, "GET", "/api/v1/timeline/events/evt-1", "timeline.reader"),
        (reader, "GET", EXPORT, "timeline.exporter"),
        (reader, "GET", READ + "/verify", "timeline.exporter"),
        (nobody, "GET", READ, "timeline.reader"),
    ]
    for headers, method, path, role in cases:
        resp = site.client.request(
            method,
            path,
            headers={**headers, "Content-Type": "application/cloudevents+json"},
            content=json.dumps(event(2, incident="INC-P")),
        )
        assert resp.status_code == 403, (path, resp.text)
        problem = resp.json()
        assert problem["missing_role"] == role
        assert role in problem["detail"]
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert site.client.get(READ, headers=reader).status_code == 200
    # A refused append stored nothing.
    assert [e["id"] for e in site.client.get(READ, headers=reader).json()["events"]] == ["evt-1"]


def test_group_roles_and_attributes_are_inherited(site: Site) -> None:
    writer = site.user(roles=("timeline.writer",))
    site.append(
        writer,
        [event(1, incident="INC-P", imvisibility="restricted", data={"note": "secret plan"})],
    )
    directory = site.container.directory
    group = directory.create_group("sre")
    from incidents.identity.directory import GrantKind, PrincipalType

    directory.grant(PrincipalType.GROUP, group.group_id, GrantKind.ROLE, "timeline.reader")
    directory.grant(PrincipalType.GROUP, group.group_id, GrantKind.ATTRIBUTE, "restricted_access")
    member = site.user(roles=())
    assert site.client.get(READ, headers=member).status_code == 403
    email = site.client.get("/api/v1/whoami", headers=member).json()["subject"]
    directory.set_members(group.group_id, [directory.find_user(email).user_id], replace=False)
    resp = site.client.get(READ, headers=member)
    assert resp.status_code == 200
    assert [e["content"] for e in resp.json()["events"]] == ["secret plan"]
    who = site.client.get("/api/v1/whoami", headers=member).json()
    assert who["groups"] == ["sre"]
    assert "restricted" in who["visibilities"]


def test_a_deactivated_user_is_refused(site: Site) -> None:
    headers = site.user()
    email = site.client.get("/api/v1/whoami", headers=headers).json()["subject"]
    user = site.container.directory.find_user(email)
    site.container.directory.update_user(user.user_id, active=False)
    resp = site.client.get(READ, headers=headers)
    assert resp.status_code == 401
    assert "not an active user" in resp.json()["detail"]


# --- visibility and redaction ------------------------------------------------------------


def _sensitive_events() -> list[dict[str, Any]]:
    return [
        event("pub", incident="INC-P", data={"title": "Checkout errors", "note": "MK-PUBLIC"}),
        event(
            "restr",
            incident="INC-P",
            imvisibility="restricted",
            data={"note": "MK-RESTRICTED"},
        ),
        event(
            "conf",
            incident="INC-P",
            imvisibility="confidential",
            data={"note": "MK-CONFIDENTIAL"},
        ),
        event(
            "phi",
            incident="INC-P",
            imdataclass=["phi"],
            data={"title": "MK-PHI-TITLE", "diagnosis": "MK-PHI"},
        ),
        event(
            "pii",
            incident="INC-P",
            imdataclass={"pii": ["customer.email", "customer_name"]},
            data={
                "customer": {"email": "MK-PII-PATH", "tier": "gold"},
                "customer_name": "MK-PII-NAME",
                "account_id": "12345",
            },
        ),
        event(
            "rule",
            incident="INC-P",
            data={"description": "Customer wrote in", "reporter_email": "MK-PII-RULE"},
        ),
        event("fin", incident="INC-P", imdataclass="financial", data={"content": "MK-FIN"}),
        event("legal", incident="INC-P", imdataclass=["legal_hold"], data={"text": "MK-LEGAL"}),
    ]


# Marker -> the attribute that opens it, or the visibility level it needs.
_CLASS_MARKERS = {
    "MK-PHI": "phi_access",
    "MK-PHI-TITLE": "phi_access",
    "MK-PII-PATH": "pii_access",
    "MK-PII-NAME": "pii_access",
    "MK-PII-RULE": "pii_access",
    "MK-FIN": "financial_access",
    "MK-LEGAL": "legal_hold_access",
}
_VISIBILITY_MARKERS = {"MK-RESTRICTED": "restricted", "MK-CONFIDENTIAL": "confidential"}


def _may_see(marker: str, attributes: set[str], clearance: str | None) -> bool:
    if marker in _CLASS_MARKERS:
        return _CLASS_MARKERS[marker] in attributes
    if marker in _VISIBILITY_MARKERS:
        level = _VISIBILITY_MARKERS[marker]
        rank = CLEARANCE_LEVELS.index(clearance) if clearance else 0
        return f"{level}_access" in attributes or rank >= CLEARANCE_LEVELS.index(level)
    return True


def _all_reads(site: Site, headers: dict[str, str]) -> dict[str, str]:
    """Every enforcement point's full output for one reader, as text."""
    out = {
        "list": site.client.get(READ, headers=headers, params={"limit": 1000}).text,
        "json": site.client.get(EXPORT, headers=headers, params={"format": "json"}).text,
        "dotted": site.client.get(
            EXPORT, headers=headers, params={"format": "json", "dialect": "dotted"}
        ).text,
        "md": site.client.get(EXPORT, headers=headers, params={"format": "md"}).text,
    }
    for evt in _sensitive_events():
        resp = site.client.get(f"/api/v1/timeline/events/{evt['id']}", headers=headers)
        out[f"get {evt['id']}"] = resp.text
    return out


@pytest.fixture
def seeded(site: Site) -> Site:
    site.append(site.user(roles=("timeline.writer",)), _sensitive_events())
    return site


def test_visibility_hides_whole_events_and_counts_stay_honest(seeded: Site) -> None:
    plain = seeded.user()
    listed = seeded.client.get(READ, headers=plain, params={"limit": 3}).json()
    assert len(listed["events"]) == 3  # pages stay full: filtering is in the query
    ids = [
        e["id"]
        for e in seeded.client.get(READ, headers=plain, params={"limit": 1000}).json()["events"]
    ]
    assert "evt-restr" not in ids and "evt-conf" not in ids
    assert len(ids) == 6
    assert seeded.client.get("/api/v1/timeline/events/evt-restr", headers=plain).status_code == 404
    md = seeded.client.get(EXPORT, headers=plain, params={"format": "md"})
    assert "**Events**: 6\n" in md.text
    assert md.headers["x-event-count"] == "6"

    cleared = seeded.user(clearance="confidential")
    ids = [
        e["id"]
        for e in seeded.client.get(READ, headers=cleared, params={"limit": 1000}).json()["events"]
    ]
    assert "evt-conf" in ids and "evt-restr" not in ids  # confidential < restricted


def test_redaction_replaces_covered_values_and_flags_the_event(seeded: Site) -> None:
    plain = seeded.user()
    entries = {
        e["id"]: e
        for e in seeded.client.get(READ, headers=plain, params={"limit": 1000}).json()["events"]
    }
    pii = entries["evt-pii"]
    assert pii["data"]["customer"] == {"email": "[REDACTED]", "tier": "gold"}
    assert pii["data"]["customer_name"] == "[REDACTED]"
    assert pii["data"]["account_id"] == "12345"
    assert pii["redaction_applied"] is True
    assert entries["evt-rule"]["data"]["reporter_email"] == "[REDACTED]"
    assert entries["evt-rule"]["data"]["description"] == "Customer wrote in"
    phi = entries["evt-phi"]
    # A class for the whole data replaces all of it; nothing derived from it survives.
    assert phi["data"] == "[REDACTED]"
    assert phi["title"] == "Note Added"
    assert phi["content"] == "[REDACTED]"
    assert "redaction_applied" not in entries["evt-pub"]
    got = seeded.client.get("/api/v1/timeline/events/evt-pii", headers=plain).json()
    assert got["imredactionapplied"] is True
    dotted = seeded.client.get(
        EXPORT, headers=plain, params={"format": "json", "dialect": "dotted"}
    ).json()
    assert any(e.get("im.redaction_applied") is True for e in dotted)
    report = seeded.client.get(EXPORT, headers=plain, params={"format": "md"}).text
    assert report.count("**Redacted**: yes") == 5  # phi, pii, rule, financial, legal_hold

    full = seeded.user(attributes=ATTRIBUTES)
    entries = {
        e["id"]: e
        for e in seeded.client.get(READ, headers=full, params={"limit": 1000}).json()["events"]
    }
    assert entries["evt-pii"]["data"]["customer"]["email"] == "MK-PII-PATH"
    assert "redaction_applied" not in entries["evt-pii"]


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    attributes=st.sets(st.sampled_from(ATTRIBUTES)),
    clearance=st.none() | st.sampled_from(CLEARANCE_LEVELS),
)
def test_no_marker_leaks_through_any_enforcement_point(
    seeded: Site, attributes: set[str], clearance: str | None
) -> None:
    headers = seeded.user(attributes=tuple(sorted(attributes)), clearance=clearance)
    outputs = _all_reads(seeded, headers)
    markers = [*_CLASS_MARKERS, *_VISIBILITY_MARKERS, "MK-PUBLIC"]
    for marker in markers:
        allowed = _may_see(marker, attributes, clearance)
        # Markers are prefixes of one another (MK-PHI, MK-PHI-TITLE): match whole values.
        needle = f'"{marker}"'
        for where, text in outputs.items():
            if where == "md":
                present = any(line.strip() == marker for line in text.splitlines())
            else:
                present = needle in text
            if not allowed:
                assert not present, f"{marker} leaked through {where}"
        if allowed:
            assert f'"{marker}"' in outputs["list"] or marker in outputs["md"], marker


# --- the decision point ------------------------------------------------------------------


def test_every_guarded_path_fails_closed_when_opa_is_down(database_url: str) -> None:
    for site in _site(database_url, opa_url="http://127.0.0.1:9"):
        container = site.container
        grant_access(container, "alice@example.com")
        _, token = container.tokens.create("alice@example.com")
        headers = {"Authorization": f"Bearer {token}"}
        for method, path in (
            ("GET", READ),
            ("GET", READ + "/verify"),
            ("GET", EXPORT),
            ("GET", "/api/v1/timeline/events/evt-1"),
            ("GET", "/api/v1/whoami"),
            ("POST", "/api/v1/timeline/events"),
        ):
            resp = site.client.request(
                method,
                path,
                headers={**headers, "Content-Type": "application/cloudevents+json"},
                content=json.dumps(event(1, incident="INC-P")),
            )
            assert resp.status_code == 503, path
            assert "Policy Decision Point not responding" in resp.json()["detail"]
        assert container.reader.head_position() == 0  # nothing was appended


class _OpaDataApi(BaseHTTPRequestHandler):
    """OPA's data API (POST /v1/data/<path> with {"input": ...} -> {"result": ...}),
    answering with the shipped Rego evaluated for real."""

    policy_dir: Path = SHIPPED_POLICIES
    calls: list[str] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        self.calls.append(self.path)
        rego = Interpreter()
        for path in sorted(self.policy_dir.glob("*.rego")):
            rego.add_module(path.stem, path.read_text())
        rego.set_input_term(json.dumps(body["input"]))
        query = "data." + self.path.removeprefix("/v1/data/").replace("/", ".")
        answer = json.loads(str(rego.query(query)))
        payload = json.dumps({"result": answer["expressions"][0]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


def test_decisions_come_from_opa_when_configured(database_url: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpaDataApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _OpaDataApi.calls.clear()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        for site in _site(database_url, opa_url=url):
            writer = site.user(roles=("timeline.writer",))
            site.append(writer, [event(1, incident="INC-P", data={"customer_email": "x@y"})])
            reader = site.user(roles=("timeline.reader",))
            resp = site.client.get(READ, headers=reader)
            assert resp.status_code == 200
            assert resp.json()["events"][0]["data"]["customer_email"] == "[REDACTED]"
            assert site.client.get(EXPORT, headers=reader).status_code == 403
        assert _OpaDataApi.calls
        assert set(_OpaDataApi.calls) == {"/v1/data/incidents/authz/decision"}
    finally:
        server.shutdown()


def test_a_policy_directory_replaces_the_shipped_policy_and_reloads(
    database_url: str, tmp_path: Path
) -> None:
    policy_dir = tmp_path / "policies"
    shutil.copytree(SHIPPED_POLICIES, policy_dir)
    for site in _site(database_url, policy_dir=str(policy_dir)):
        writer = site.user(roles=("timeline.writer",))
        site.append(writer, [event(1, incident="INC-P", data={"customer_email": "x@y"})])
        reader = site.user(roles=("timeline.reader",))
        before = site.client.get(READ, headers=reader).json()["events"][0]["data"]
        assert before["customer_email"] == "[REDACTED]"
        rego = policy_dir / "timeline.rego"
        rego.write_text(
            rego.read_text().replace('marker := "[REDACTED]"', 'marker := "**[REDACTED - PII]**"')
        )
        after = site.client.get(READ, headers=reader).json()["events"][0]["data"]
        assert after["customer_email"] == "**[REDACTED - PII]**"
        # A broken policy fails closed instead of falling back to anything.
        rego.write_text("package incidents.authz\nthis is not rego\n")
        assert site.client.get(READ, headers=reader).status_code == 503


def test_decisions_are_audited_and_traced_without_event_content(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = InMemorySpanExporter()
    container = build_container(
        make_settings(database_url, policy_cache_seconds=0), span_exporter=exporter
    )
    with TestClient(create_app(container)) as client:
        site = Site(container, client)
        writer = site.user(roles=("timeline.writer",))
        with caplog.at_level(logging.INFO, logger="incidents.audit"):
            site.append(writer, [event(1, incident="INC-P", data={"ssn": "MK-SSN"})])
            site.client.get(READ, headers=writer)
    records = [r for r in caplog.records if r.name == "incidents.audit"]
    outcomes = {(r.__dict__["action"], r.__dict__["outcome"]) for r in records}
    assert ("timeline.append", "allow") in outcomes
    assert ("timeline.read", "deny") in outcomes
    assert all("MK-SSN" not in r.getMessage() + str(r.__dict__) for r in records)
    assert "timeline.policy.evaluate" in {s.name for s in exporter.get_finished_spans()}


def test_replays_are_no_oracle_for_callers_who_cannot_read_the_stored_event(site: Site) -> None:
    recorder = site.user(roles=("timeline.writer", "timeline.reader"))
    stored = event(
        "secret",
        incident="INC-P",
        imdataclass={"pii": ["customer.ssn"]},
        data={"customer": {"ssn": "123-45-6789"}},
    )
    site.append(recorder, [stored])
    responder = site.user(roles=("timeline.writer", "timeline.reader"))

    def replay(headers: dict[str, str], ssn: str) -> Any:
        guess = {**stored, "data": {"customer": {"ssn": ssn}}}
        return site.client.post(
            "/api/v1/timeline/events",
            json=guess,
            headers={**headers, "Content-Type": "application/cloudevents+json"},
        )

    right, wrong = replay(responder, "123-45-6789"), replay(responder, "000-00-0000")
    assert right.status_code == wrong.status_code == 409
    assert right.json()["detail"] == wrong.json()["detail"]
    assert "event_id" not in right.json() and "incident_id" not in right.json()
    batch = site.client.post(
        "/api/v1/timeline/events",
        json=[stored],
        headers={**responder, "Content-Type": "application/cloudevents-batch+json"},
    ).json()
    assert batch["results"][0]["status"] == 409
    assert "event_id" not in batch["results"][0]
    # The recorder, and a reader who may see everything, still get the guide's answers.
    assert replay(recorder, "123-45-6789").status_code == 200
    assert replay(recorder, "000-00-0000").status_code == 409
    full = site.user(roles=("timeline.writer",), attributes=ATTRIBUTES)
    assert replay(full, "123-45-6789").json()["created"] is False


def test_a_deleted_or_renamed_user_takes_their_tokens_along(site: Site) -> None:
    directory = site.container.directory
    headers = site.user()
    email = site.client.get("/api/v1/whoami", headers=headers).json()["subject"]
    directory.delete_user(directory.find_user(email).user_id)
    # Whoever is given the address next does not inherit the old tokens.
    grant_access(site.container, email)
    assert site.client.get(READ, headers=headers).status_code == 401

    renamed = site.user()
    old = site.client.get("/api/v1/whoami", headers=renamed).json()["subject"]
    user = directory.find_user(old)
    directory.update_user(user.user_id, email=f"new-{old}")
    grant_access(site.container, old)
    assert site.client.get("/api/v1/whoami", headers=renamed).status_code == 401


def test_opa_credentials_never_reach_an_answer(database_url: str) -> None:
    for site in _site(database_url, opa_url="http://opa:s3cr3t@127.0.0.1:9"):
        grant_access(site.container, "alice@example.com")
        _, token = site.container.tokens.create("alice@example.com")
        resp = site.client.get(READ, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 503
        assert "s3cr3t" not in resp.text


# --- generated events, policies and subjects ---------------------------------------------

_PLACES = st.sampled_from(["list-class", "path", "rule", "visibility", "extension", "public"])
_CLASSES = st.sampled_from(["pii", "phi", "financial", "legal_hold"])
_VIS = st.sampled_from(["restricted", "confidential"])


@st.composite
def _planted(draw: st.DrawFn, n: int) -> tuple[dict[str, Any], str, str]:
    """An event hiding a unique secret somewhere, and what opens it: (event, secret, key).

    ``key`` is an attribute name, ``vis:LEVEL`` for a visibility, or ``public``.
    """
    secret = f"SECRET{n:03d}X"
    place = draw(_PLACES)
    cls = draw(_CLASSES)
    nested = draw(st.booleans())
    attrs: dict[str, Any] = {}
    if place == "list-class":
        data: dict[str, Any] = {"title": secret, "nested": {"v": [secret]}}
        attrs["imdataclass"] = [cls]
        opener = f"{cls}_access"
    elif place == "path":
        data = {"outer": {"inner": [{"value": secret}]}, "service": "checkout"}
        path = draw(
            st.sampled_from(
                ["outer.inner[0].value", "outer.inner[*].value", "/outer/inner/0/value"]
            )
        )
        attrs["imdataclass"] = {cls: [path]}
        opener = f"{cls}_access"
    elif place == "rule":
        key = draw(
            st.sampled_from(["customerEmail", "reporter_email", "first-name", "dateOfBirth"])
        )
        data = {"wrapper": {key: secret}} if nested else {key: secret}
        opener = "pii_access"
    elif place == "visibility":
        level = draw(_VIS)
        data = {"note": secret}
        attrs["imvisibility"] = level
        opener = f"vis:{level}"
    elif place == "extension":
        data = {"note": "no secret here"}
        attrs["contactemail"] = secret
        opener = "pii_access"
    else:
        data = {"note": secret}
        opener = "public"
    return event(f"gen-{n}", incident="INC-P", data=data, **attrs), secret, opener


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=st.lists(st.integers(0, 10**6), min_size=1, max_size=6, unique=True).flatmap(
        lambda ns: st.tuples(*[_planted(n) for n in ns])
    ),
    attributes=st.sets(st.sampled_from(ATTRIBUTES)),
    clearance=st.none() | st.sampled_from(CLEARANCE_LEVELS),
    marker=st.sampled_from(["[REDACTED]", "**[REDACTED - PII]**", "<hidden>"]),
)
def test_generated_events_policies_and_subjects_leak_nothing(
    policy_site: Site,
    plan: tuple[tuple[dict[str, Any], str, str], ...],
    attributes: set[str],
    clearance: str | None,
    marker: str,
) -> None:
    # The policy itself is generated too: its marker changes, and is hot-reloaded.
    rego = Path(policy_site.container.settings.policy_dir) / "timeline.rego"
    text = rego.read_text()
    start = text.index("marker := ")
    end = text.index("\n", start)
    rego.write_text(f"{text[:start]}marker := {json.dumps(marker)}{text[end:]}")

    incident = f"INC-{uuid.uuid4().hex[:10]}"
    events = []
    for evt, _, _ in plan:
        evt = {**evt, "id": f"{incident}-{evt['id']}", "subject": f"incident/{incident}"}
        events.append(evt)
    policy_site.append(policy_site.user(roles=("timeline.writer",)), events)
    reader = policy_site.user(attributes=tuple(sorted(attributes)), clearance=clearance)
    base = f"/api/v1/incidents/{incident}/timeline"
    outputs = [
        policy_site.client.get(base, headers=reader, params={"limit": 1000}).text,
        policy_site.client.get(base + "/export", headers=reader, params={"format": "json"}).text,
        policy_site.client.get(base + "/export", headers=reader, params={"format": "md"}).text,
        *(
            policy_site.client.get(f"/api/v1/timeline/events/{e['id']}", headers=reader).text
            for e in events
        ),
    ]
    rank = CLEARANCE_LEVELS.index(clearance) if clearance else 0
    for _, secret, opener in plan:
        if opener == "public":
            allowed = True
        elif opener.startswith("vis:"):
            level = opener[4:]
            allowed = f"{level}_access" in attributes or rank >= CLEARANCE_LEVELS.index(level)
        else:
            allowed = opener in attributes
        seen = any(secret in text for text in outputs)
        assert seen == allowed, (secret, opener, attributes, clearance)
    if any(not (o == "public" or o in attributes or o.startswith("vis:")) for *_, o in plan):
        assert marker in outputs[0] or json.dumps(marker)[1:-1] in outputs[0]


@pytest.fixture
def policy_site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    policy_dir = tmp_path / "generated-policy"
    shutil.copytree(SHIPPED_POLICIES, policy_dir)
    yield from _site(database_url, policy_dir=str(policy_dir))


def test_an_incident_of_hidden_events_looks_like_no_incident(site: Site) -> None:
    writer = site.user(roles=("timeline.writer",))
    site.append(writer, [event("h", incident="INC-HIDDEN", imvisibility="confidential")])
    plain = site.user()
    for path in (
        "/api/v1/incidents/INC-HIDDEN/timeline",
        "/api/v1/incidents/INC-HIDDEN/timeline/export",
    ):
        hidden = site.client.get(path, headers=plain)
        unknown = site.client.get(path.replace("INC-HIDDEN", "INC-NONE"), headers=plain)
        assert hidden.status_code == unknown.status_code == 404
    # Filters that match nothing in a visible incident still give an empty page.
    site.append(writer, [event("v", incident="INC-VISIBLE")])
    empty = site.client.get(
        "/api/v1/incidents/INC-VISIBLE/timeline", headers=plain, params={"actor": "nobody"}
    )
    assert empty.status_code == 200
    assert empty.json()["events"] == []
