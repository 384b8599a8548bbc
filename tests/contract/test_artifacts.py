"""Artifacts through the API on both backends, stored in a local directory."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incidents.app import Container, build_container, create_app
from incidents.events.timeformat import now_micros
from incidents.policy.decision_point import SHIPPED_POLICIES
from incidents.retention.tiers import DAY_US
from tests.conftest import grant_access, make_settings

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


class Site:
    def __init__(self, client: TestClient, tokens: dict[str, str], container: Container) -> None:
        self.client = client
        self.tokens = tokens
        self.container = container

    def upload(
        self, incident: str, data: bytes, content_type: str, filename: str = "graph.png", who="cora"
    ) -> Any:
        return self.client.post(
            f"/api/v1/incidents/{incident}/artifacts",
            params={"filename": filename},
            content=data,
            headers={"Authorization": f"Bearer {self.tokens[who]}", "Content-Type": content_type},
        )

    def get(self, path: str, who: str = "cora") -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {self.tokens[who]}"})

    def declare(self, title: str, classification: str = "public") -> str:
        answer = self.client.post(
            "/api/v1/incidents",
            json={"title": title, "classification": classification},
            headers={"Authorization": f"Bearer {self.tokens['cora']}"},
        )
        assert answer.status_code == 201, answer.text
        incident_id: str = answer.json()["id"]
        return incident_id


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    settings = make_settings(
        database_url, artifacts_dir=str(tmp_path / "objects"), artifacts_max_bytes=4096
    )
    container = build_container(settings)
    grant_access(container, "cora@example.com", roles=("incident.commander",))
    grant_access(container, "rita@example.com", roles=("incident.reader",), attributes=())
    grant_access(container, "ed@example.com", roles=("incident.commander",), attributes=())
    grant_access(container, "dpo@example.com", roles=("compliance.officer",))
    tokens = {
        who: container.tokens.create(f"{who}@example.com")[1]
        for who in ("cora", "rita", "ed", "dpo")
    }
    with TestClient(create_app(container)) as client:
        yield Site(client, tokens, container)


def test_upload_list_download(site: Site, tmp_path: Path) -> None:
    incident = site.declare("Checkout down")
    answer = site.upload(incident, PNG, "image/png")
    assert answer.status_code == 201, answer.text
    digest = hashlib.sha256(PNG).hexdigest()
    assert answer.json()["sha256"] == digest and answer.json()["size"] == len(PNG)
    assert (tmp_path / "objects" / digest[:2] / digest).read_bytes() == PNG
    listed = site.get(f"/api/v1/incidents/{incident}/artifacts").json()["artifacts"]
    assert [(a["sha256"], a["filename"]) for a in listed] == [(digest, "graph.png")]
    got = site.get(f"/api/v1/incidents/{incident}/artifacts/{digest}", who="rita")
    assert got.status_code == 200 and got.content == PNG
    assert got.headers["content-type"] == "image/png"
    assert got.headers["content-disposition"] == "attachment"
    # The same bytes again: the same address, one object.
    again = site.upload(incident, PNG, "image/png", filename="copy.png")
    assert again.json()["sha256"] == digest
    # Another incident does not serve it, even though the bytes are stored.
    other = site.declare("Search slow")
    assert site.get(f"/api/v1/incidents/{other}/artifacts/{digest}").status_code == 404


def test_artifacts_inherit_the_incidents_visibility(site: Site) -> None:
    incident = site.declare("Breach", classification="confidential")
    digest = site.upload(incident, b"hello", "text/plain", filename="notes.txt").json()["sha256"]
    assert site.get(f"/api/v1/incidents/{incident}/artifacts/{digest}").content == b"hello"
    hidden = site.get(f"/api/v1/incidents/{incident}/artifacts/{digest}", who="rita")
    assert hidden.status_code == 404
    assert site.get(f"/api/v1/incidents/{incident}/artifacts", who="rita").status_code == 404


def test_bad_uploads_are_problems_naming_the_field(site: Site) -> None:
    incident = site.declare("Checkout down")
    cases = [
        (site.upload(incident, b"MZ\x90\x00binary", "image/png"), 415, "content-type"),
        (site.upload(incident, PNG, "application/x-msdownload"), 415, "content-type"),
        (site.upload(incident, b"{not json", "application/json"), 415, "content-type"),
        (site.upload(incident, b"x" * 5000, "text/plain"), 413, None),
        (site.upload(incident, b"x", "text/plain", filename="../etc/passwd"), 422, "filename"),
        (site.upload(incident, PNG, "image/png", who="rita"), 403, None),
        (site.upload("INC-404", PNG, "image/png"), 404, None),
    ]
    for answer, status, field in cases:
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        if field is not None:
            assert answer.json()["errors"][0]["field"] == field
    no_name = site.client.post(
        f"/api/v1/incidents/{incident}/artifacts",
        content=PNG,
        headers={"Authorization": f"Bearer {site.tokens['cora']}", "Content-Type": "image/png"},
    )
    assert no_name.status_code == 400 and no_name.json()["errors"][0]["field"] == "filename"
    bad = site.get(f"/api/v1/incidents/{incident}/artifacts/not-a-digest")
    assert bad.status_code == 400


def _store_export(site: Site, incident: str, who: str, fmt: str = "json") -> Any:
    return site.client.post(
        f"/api/v1/incidents/{incident}/timeline/export/artifacts",
        params={"format": fmt},
        headers={"Authorization": f"Bearer {site.tokens[who]}"},
    )


def _note_with_pii(site: Site, incident: str) -> None:
    note = {
        "specversion": "1.0",
        "id": "pii-note",
        "source": "im://tests",
        "type": "im.note.add",
        "subject": f"incident/{incident}",
        "data": {"text": "call back", "reporter_email": "jane@example.com"},
    }
    answer = site.client.post(
        "/api/v1/timeline/events",
        json=note,
        headers={
            "Authorization": f"Bearer {site.tokens['cora']}",
            "Content-Type": "application/cloudevents+json",
        },
    )
    assert answer.status_code == 201, answer.text


def test_a_stored_export_holds_what_its_requester_could_read(site: Site, tmp_path: Path) -> None:
    incident = site.declare("Checkout down")
    _note_with_pii(site, incident)
    direct = site.get(f"/api/v1/incidents/{incident}/timeline/export?format=json")
    # cora reads PII; ed (a commander without data-class attributes) does not.
    stored = _store_export(site, incident, "cora")
    assert stored.status_code == 201, stored.text
    full = stored.json()
    assert full["content_type"] == "application/json"
    assert full["filename"].startswith(f"{incident}-timeline-") and full["filename"].endswith(
        ".json"
    )
    mine = site.get(f"/api/v1/incidents/{incident}/artifacts/{full['sha256']}")
    assert mine.status_code == 200 and b"jane@example.com" in mine.content
    # Exactly the export cora would have downloaded herself.
    assert hashlib.sha256(direct.content).hexdigest() == full["sha256"]
    # Kept apart from attachments: naming its digest elsewhere reaches nothing.
    assert (tmp_path / "objects" / "ex" / f"export-{full['sha256']}").is_file()
    assert not (tmp_path / "objects" / full["sha256"][:2] / full["sha256"]).exists()

    narrow = _store_export(site, incident, "ed", fmt="md")
    assert narrow.status_code == 201, narrow.text
    assert narrow.json()["content_type"] == "text/markdown"
    edited = site.get(f"/api/v1/incidents/{incident}/artifacts/{narrow.json()['sha256']}", "ed")
    assert edited.status_code == 200 and b"jane@example.com" not in edited.content
    # ed may not download cora's export (it shows PII); cora may download ed's.
    assert (
        site.get(f"/api/v1/incidents/{incident}/artifacts/{full['sha256']}", "ed").status_code
        == 404
    )
    assert (
        site.get(f"/api/v1/incidents/{incident}/artifacts/{narrow.json()['sha256']}").status_code
        == 200
    )
    listed = site.get(f"/api/v1/incidents/{incident}/artifacts", "ed").json()["artifacts"]
    assert {a["sha256"] for a in listed} == {full["sha256"], narrow.json()["sha256"]}


def test_a_stored_export_cannot_be_forged_or_made_without_rights(site: Site) -> None:
    incident = site.declare("Checkout down")
    forged = {
        "specversion": "1.0",
        "id": "forged",
        "source": "im://tests",
        "type": "im.artifact.attach",
        "subject": f"incident/{incident}",
        "data": {"sha256": "0" * 64, "export": {"visibilities": [], "data_classes": []}},
    }
    answer = site.client.post(
        "/api/v1/timeline/events",
        json=forged,
        headers={
            "Authorization": f"Bearer {site.tokens['cora']}",
            "Content-Type": "application/cloudevents+json",
        },
    )
    assert answer.status_code == 403 and "stored export" in answer.json()["detail"]
    cases = [
        (_store_export(site, incident, "rita"), 403),
        (_store_export(site, "INC-404", "cora"), 404),
        (_store_export(site, incident, "cora", fmt="pdf"), 400),
    ]
    for _ in range(40):
        site.client.post(
            f"/api/v1/incidents/{incident}/notes",
            json={"text": "a long note " * 10},
            headers={"Authorization": f"Bearer {site.tokens['cora']}"},
        )
    cases.append((_store_export(site, incident, "cora"), 413))
    for answer, status in cases:
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")


def _position_of(site: Site, incident: str, event_id: str) -> int:
    events = site.get(f"/api/v1/incidents/{incident}/timeline").json()["events"]
    (position,) = [e["position"] for e in events if e["id"] == event_id]
    return int(position)


def test_an_erasure_withdraws_stored_exports_and_a_purge_deletes_them(
    site: Site, tmp_path: Path
) -> None:
    incident = site.declare("Checkout down")
    _note_with_pii(site, incident)
    stored = _store_export(site, incident, "cora")
    assert stored.status_code == 201, stored.text
    digest = stored.json()["sha256"]
    path = f"/api/v1/incidents/{incident}/artifacts/{digest}"
    kept = tmp_path / "objects" / "ex" / f"export-{digest}"
    assert b"jane@example.com" in site.get(path).content and kept.is_file()

    erased = site.client.post(
        f"/api/v1/incidents/{incident}/erasures",
        json={
            "position": _position_of(site, incident, "pii-note"),
            "fields": ["reporter_email"],
            "reason": "GDPR request 7",
        },
        headers={"Authorization": f"Bearer {site.tokens['dpo']}"},
    )
    assert erased.status_code == 201, erased.text
    gone = site.get(path)
    assert gone.status_code == 410 and b"jane@example.com" not in gone.content
    assert gone.headers["content-type"].startswith("application/problem+json")
    assert "erasure" in gone.json()["detail"]
    assert not kept.exists()
    listed = site.get(f"/api/v1/incidents/{incident}/artifacts").json()["artifacts"]
    assert [a.get("withdrawn") for a in listed if a["sha256"] == digest] == [True]

    # An export made after the erasure holds the erased marker only, and is served.
    fresh = _store_export(site, incident, "cora").json()["sha256"]
    served = site.get(f"/api/v1/incidents/{incident}/artifacts/{fresh}")
    assert served.status_code == 200 and b"jane@example.com" not in served.content
    fresh_path = tmp_path / "objects" / "ex" / f"export-{fresh}"
    assert fresh_path.is_file()

    for status in ("resolved", "closed"):
        moved = site.client.post(
            f"/api/v1/incidents/{incident}/status",
            json={"status": status},
            headers={"Authorization": f"Bearer {site.tokens['cora']}"},
        )
        assert moved.status_code == 200, moved.text
    retention = site.container.retention
    assert retention is not None
    report = retention.run(now_us=now_micros() + 3000 * DAY_US)
    assert [stone.incident_id for stone in report.purged] == [incident]
    assert not fresh_path.exists()
    assert site.get(f"/api/v1/incidents/{incident}/artifacts/{fresh}").status_code == 404


def test_a_stored_export_needs_the_timeline_read_action_and_hides_its_view(
    database_url: str, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    shipped = (SHIPPED_POLICIES / "timeline.rego").read_text()
    # Incident readers who may read incidents and their attachments, not their timelines.
    narrowed = shipped.replace(
        '"incident.reader": ["timeline.read", "incident.read"]',
        '"incident.reader": ["incident.read"]',
    )
    assert narrowed != shipped
    (policies / "timeline.rego").write_text(narrowed)
    settings = make_settings(
        database_url, artifacts_dir=str(tmp_path / "objects"), policy_dir=str(policies)
    )
    container = build_container(settings)
    grant_access(container, "cora@example.com", roles=("incident.commander",))
    grant_access(container, "vic@example.com", roles=("incident.reader",))
    tokens = {who: container.tokens.create(f"{who}@example.com")[1] for who in ("cora", "vic")}
    with TestClient(create_app(container)) as client:
        site = Site(client, tokens, container)
        incident = site.declare("Checkout down")
        attached = site.upload(incident, PNG, "image/png").json()["sha256"]
        stored = _store_export(site, incident, "cora").json()["sha256"]
        base = f"/api/v1/incidents/{incident}/artifacts"
        assert site.get(f"{base}/{attached}", "vic").content == PNG
        refused = site.get(f"{base}/{stored}", "vic")
        assert refused.status_code == 403 and refused.json()["missing_role"]
        assert site.get(f"{base}/{stored}").status_code == 200
        for who in ("cora", "vic"):
            listed = site.get(base, who).json()["artifacts"]
            (export,) = [a for a in listed if a["sha256"] == stored]
            assert "export" not in export and export["stored_export"] is True
            assert "visibilities" not in str(listed)


def test_storing_an_export_reads_the_timeline_off_the_event_loop(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    incident = site.declare("Checkout down")
    timeline = site.container.timeline
    opened_export = timeline.export
    on_loop: list[bool] = []

    def export(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return opened_export(*args, **kwargs)

    monkeypatch.setattr(timeline, "export", export)
    assert _store_export(site, incident, "cora").status_code == 201
    assert on_loop == [False]
