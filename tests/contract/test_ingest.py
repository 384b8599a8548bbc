"""Alert ingestion: Alertmanager and PagerDuty webhooks, and the alerts listing."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from incidents.app import Container, build_container, create_app, load_configuration
from incidents.config import ConfigError
from incidents.incident.commands import Update
from incidents.integrations.credentials import IntegrationsError
from incidents.integrations.pagerduty.inbound import sign
from incidents.integrations.registry import parse_integrations
from incidents.store.schema import alerts, timeline_events
from tests.conftest import grant_access, make_settings

PAYLOADS = Path(__file__).parent / "payloads"
AM_TOKEN = "am-prod-token-0123456789abcdef"
AM_TOKEN_NEXT = "am-prod-token-next-0123456789ab"
PD_SECRET_OLD = "pd-signing-secret-old-0123456789"
PD_SECRET_NEW = "pd-signing-secret-new-0123456789"
INTEGRATIONS = {
    "alertmanager": [{"name": "prod", "tokens": [AM_TOKEN, AM_TOKEN_NEXT]}],
    "pagerduty": [{"name": "main", "secrets": [PD_SECRET_OLD, PD_SECRET_NEW]}],
}


def payload(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return loaded


def raw(name: str) -> bytes:
    return (PAYLOADS / f"{name}.json").read_bytes()


@dataclass
class Ingest:
    client: TestClient
    container: Container
    token: str

    def alertmanager(self, body: dict[str, Any] | bytes, token: str = AM_TOKEN) -> Any:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        return self.client.post(
            "/api/v1/ingest/alertmanager",
            content=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )

    def pagerduty(self, body: bytes, signature: str | None, **headers: str) -> Any:
        sent = {"Content-Type": "application/json", **headers}
        if signature is not None:
            sent["X-PagerDuty-Signature"] = signature
        return self.client.post("/api/v1/ingest/pagerduty", content=body, headers=sent)

    def alerts(self, token: str | None = None, **params: Any) -> Any:
        return self.client.get(
            "/api/v1/alerts",
            params=params,
            headers={"Authorization": f"Bearer {token or self.token}"},
        )

    def count(self, table: Any) -> int:
        with self.container.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def ingest(database_url: str) -> Iterator[Ingest]:
    c = build_container(make_settings(database_url, integrations=INTEGRATIONS))
    grant_access(c, "alice@example.com")
    _, token = c.tokens.create("alice@example.com")
    with TestClient(create_app(c)) as client:
        yield Ingest(client, c, token)


# --- Alertmanager ---------------------------------------------------------------------


def test_alertmanager_payload_opens_one_incident_and_keeps_the_fingerprint(ingest: Ingest) -> None:
    r = ingest.alertmanager(payload("alertmanager_firing"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["integration"] == "alertmanager://prod"
    assert body["created"] == 2
    first, second = body["alerts"]
    # critical -> SEV-1 opens an incident; the second shares service (and rule) and attaches.
    assert first["decision"] == "opened"
    assert second["decision"] == "attached"
    assert first["incident_id"] == second["incident_id"]
    incident = ingest.container.incidents.get(first["incident_id"], None)
    assert incident is not None and incident.severity == "SEV-1"

    stored = ingest.container.timeline.get(first["event_id"])
    assert stored.type == "im.alert.trigger"
    assert stored.recorded_by == "integration:alertmanager:prod"
    assert stored.source == "alertmanager://prod"
    data = orjson.loads(stored.body)["data"]
    assert data["alert"]["fingerprint"] == "1a30ba71cca2921f"
    assert data["alert"]["attributes"]["host"] == "https://checkout-1.example.org"
    assert data["alert"]["attributes"]["alert_rule"] == "ProbeFailure"
    assert data["alert"]["ends_at"] is None


def test_alertmanager_ha_pair_sending_twice_is_a_dedupe_hit(ingest: Ingest) -> None:
    first = ingest.alertmanager(payload("alertmanager_firing")).json()
    before = ingest.count(timeline_events)
    # The peer sends the same notification, serialised differently and with volatile extras.
    twin = payload("alertmanager_firing")
    twin["notification_reason"] = "repeat"
    twin["alerts"][0]["startsAt"] = "2025-12-11T10:30:00.828000+00:00"
    second = ingest.alertmanager(orjson.dumps(twin, option=orjson.OPT_INDENT_2))
    assert second.status_code == 200
    body = second.json()
    assert body["created"] == 0 and body["duplicates"] == 2
    assert [a["event_id"] for a in body["alerts"]] == [a["event_id"] for a in first["alerts"]]
    assert ingest.count(timeline_events) == before
    assert ingest.count(alerts) == 2


def test_alertmanager_resolve_updates_the_alerts_and_the_incident(ingest: Ingest) -> None:
    opened = ingest.alertmanager(payload("alertmanager_firing")).json()
    incident_id = opened["alerts"][0]["incident_id"]
    r = ingest.alertmanager(payload("alertmanager_resolved"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] == 2
    assert {a["decision"] for a in body["alerts"]} == {"follows-alert"}
    assert {a["incident_id"] for a in body["alerts"]} == {incident_id}

    listed = ingest.alerts(incident_id=incident_id).json()["alerts"]
    assert {a["status"] for a in listed} == {"resolved"}
    incident = ingest.container.incidents.get(incident_id, None)
    assert incident is not None
    assert incident.firing_alerts == 0 and incident.alert_count == 2
    page = ingest.container.timeline.page
    from incidents.log.query import TimelineFilter

    types = [e.type for e in page(TimelineFilter(incident_id=incident_id), None, 100).events]
    assert types.count("im.alert.resolve") == 2
    assert "im.incident.alerts_resolved" in types


def test_second_token_of_a_rotation_works_and_a_bad_token_is_401(ingest: Ingest) -> None:
    assert ingest.alertmanager(payload("alertmanager_firing"), AM_TOKEN_NEXT).status_code == 200
    r = ingest.alertmanager(payload("alertmanager_firing"), "not-a-configured-token-000000")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert "not-a-configured" not in r.text
    # A user's API token is no integration token.
    r = ingest.alertmanager(payload("alertmanager_firing"), ingest.token)
    assert r.status_code == 401
    no_auth = ingest.client.post("/api/v1/ingest/alertmanager", json=payload("alertmanager_firing"))
    assert no_auth.status_code == 401


@pytest.mark.parametrize(
    ("mutate", "status", "field"),
    [
        (lambda d: d.pop("alerts"), 422, "alerts"),
        (lambda d: d["alerts"][0].update(status="burning"), 422, "alerts[0].status"),
        (lambda d: d["alerts"][1].update(startsAt="yesterday"), 422, "alerts[1].startsAt"),
        (lambda d: d["alerts"][0].update(labels={"a": 1}), 422, "alerts[0].labels.a"),
        (lambda d: d.update(version="3"), 422, "version"),
        (
            lambda d: d["alerts"][0].update(startsAt="0001-01-01T00:00:00.000Z"),
            422,
            "alerts[0].startsAt",
        ),
        (
            lambda d: d["alerts"][0].update(startsAt="0001-01-01T00:00:00+01:00"),
            422,
            "alerts[0].startsAt",
        ),
        (lambda d: d["alerts"][0].update(fingerprint="f" * 5000), 422, "alerts[0].fingerprint"),
        (lambda d: d["alerts"][0].update(fingerprint="a\nb"), 422, "alerts[0].fingerprint"),
    ],
)
def test_malformed_alertmanager_payload_is_a_problem_naming_the_field(
    ingest: Ingest, mutate: Any, status: int, field: str
) -> None:
    doc = copy.deepcopy(payload("alertmanager_firing"))
    mutate(doc)
    r = ingest.alertmanager(doc)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == field
    assert ingest.count(timeline_events) == 0


def test_alertmanager_body_that_is_not_json_is_400(ingest: Ingest) -> None:
    r = ingest.alertmanager(b"{not json")
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "body"


def test_alertmanager_body_over_the_limit_is_413(database_url: str) -> None:
    c = build_container(
        make_settings(database_url, integrations=INTEGRATIONS, max_batch_bytes=1024)
    )
    with TestClient(create_app(c)) as client:
        r = client.post(
            "/api/v1/ingest/alertmanager",
            content=raw("alertmanager_firing"),
            headers={"Authorization": f"Bearer {AM_TOKEN}"},
        )
    assert r.status_code == 413
    assert r.json()["limit_bytes"] == 1024


# --- PagerDuty ------------------------------------------------------------------------


def test_pagerduty_signed_with_either_rotating_secret_is_accepted(ingest: Ingest) -> None:
    body = raw("pagerduty_incident_triggered")
    both = f"{sign(PD_SECRET_OLD, body)},{sign(PD_SECRET_NEW, body)}"
    r = ingest.pagerduty(body, both)
    assert r.status_code == 200, r.text
    outcome = r.json()["alerts"][0]
    assert outcome["outcome"] == "created" and outcome["decision"] == "opened"
    incident = ingest.container.incidents.get(outcome["incident_id"], None)
    assert incident is not None and incident.severity == "SEV-1"  # priority P1
    stored = ingest.container.timeline.get(outcome["event_id"])
    assert stored.recorded_by == "integration:pagerduty:main"
    assert stored.source == "pagerduty://main"

    # Only the new secret (after rotation) signs the next event.
    ack = raw("pagerduty_incident_acknowledged")
    r = ingest.pagerduty(ack, sign(PD_SECRET_NEW, ack))
    assert r.status_code == 200
    assert r.json()["alerts"][0]["decision"] == "follows-alert"
    assert r.json()["alerts"][0]["incident_id"] == outcome["incident_id"]
    # Only the old one works too, during the rotation.
    done = raw("pagerduty_incident_resolved")
    assert ingest.pagerduty(done, sign(PD_SECRET_OLD, done)).status_code == 200
    listed = ingest.alerts(provider="pagerduty").json()["alerts"]
    assert [(a["key"], a["status"]) for a in listed] == [("pagerduty://main/PGR0VU2", "resolved")]


def test_pagerduty_wrong_signature_is_403_and_stores_nothing(ingest: Ingest) -> None:
    body = raw("pagerduty_incident_triggered")
    r = ingest.pagerduty(body, sign("some-other-secret-0123456789", body))
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    # Signed correctly, but over other bytes than were sent.
    r = ingest.pagerduty(body + b" ", sign(PD_SECRET_NEW, body))
    assert r.status_code == 403
    assert ingest.count(timeline_events) == 0


def test_pagerduty_missing_signature_is_401_and_stores_nothing(ingest: Ingest) -> None:
    body = raw("pagerduty_incident_triggered")
    assert ingest.pagerduty(body, None).status_code == 401
    assert ingest.pagerduty(body, "v0=abc").status_code == 401
    assert ingest.count(timeline_events) == 0


def test_pagerduty_redelivery_is_a_dedupe_hit(ingest: Ingest) -> None:
    body = raw("pagerduty_incident_triggered")
    first = ingest.pagerduty(body, sign(PD_SECRET_NEW, body), **{"X-Webhook-Id": "w-1"}).json()
    again = ingest.pagerduty(body, sign(PD_SECRET_NEW, body), **{"X-Webhook-Id": "w-1"})
    assert again.status_code == 200
    assert again.json()["duplicates"] == 1
    assert again.json()["alerts"][0]["event_id"] == first["alerts"][0]["event_id"]
    assert ingest.count(alerts) == 1


def test_pagerduty_annotation_is_accepted_but_not_an_alert(ingest: Ingest) -> None:
    body = raw("pagerduty_incident_annotated")
    r = ingest.pagerduty(body, sign(PD_SECRET_OLD, body))
    assert r.status_code == 202
    assert "not an alert transition" in r.json()["skipped"]
    assert ingest.count(timeline_events) == 0


def test_malformed_pagerduty_payload_is_a_problem(ingest: Ingest) -> None:
    doc = payload("pagerduty_incident_triggered")
    doc["event"]["occurred_at"] = "soon"
    body = orjson.dumps(doc)
    r = ingest.pagerduty(body, sign(PD_SECRET_OLD, body))
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "event.occurred_at"
    body = b'{"events": []}'
    r = ingest.pagerduty(body, sign(PD_SECRET_OLD, body))
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "event"


# --- GET /api/v1/alerts -----------------------------------------------------------------


def test_unattached_alerts_are_listed(ingest: Ingest) -> None:
    doc = payload("alertmanager_firing")
    for alert in doc["alerts"]:
        alert["labels"]["severity"] = "info"  # SEV-4: below open_incident_at
    doc["commonLabels"]["severity"] = "info"
    r = ingest.alertmanager(doc)
    assert {a["decision"] for a in r.json()["alerts"]} == {"unattached"}
    listed = ingest.alerts(unattached="true").json()
    assert len(listed["alerts"]) == 2
    assert {a["incident_id"] for a in listed["alerts"]} == {None}
    assert listed["alerts"][0]["alert"]["fingerprint"] in {"1a30ba71cca2921f", "7c2e5b9d04a1f3e8"}
    # Keyset pages of one walk through the same alerts.
    page1 = ingest.alerts(limit=1).json()
    page2 = ingest.alerts(limit=1, cursor=page1["next_cursor"]).json()
    assert "next_cursor" not in page2
    keys = [a["key"] for a in page1["alerts"] + page2["alerts"]]
    assert sorted(keys) == sorted(a["key"] for a in listed["alerts"])
    # A cursor for other filters, or a damaged one, is a 400.
    assert ingest.alerts(limit=1, status="firing", cursor=page1["next_cursor"]).status_code == 400
    assert ingest.alerts(cursor="garbage").status_code == 400
    assert ingest.alerts(status="sleeping").status_code == 400


def test_alerts_of_an_incident_the_caller_may_not_see_are_hidden(ingest: Ingest) -> None:
    opened = ingest.alertmanager(payload("alertmanager_firing")).json()
    incident_id = opened["alerts"][0]["incident_id"]
    ingest.container.incidents.execute(
        Update(incident_id, "admin@example.com", None, changes={"classification": "restricted"})
    )
    grant_access(ingest.container, "bob@example.com", ("incident.reader",), ())
    _, bob = ingest.container.tokens.create("bob@example.com")
    assert len(ingest.alerts().json()["alerts"]) == 2  # alice has restricted_access
    r = ingest.alerts(bob)
    assert r.status_code == 200
    assert r.json()["alerts"] == []
    assert ingest.alerts(bob, incident_id=incident_id).json()["alerts"] == []
    # Without any read role the listing is refused.
    grant_access(ingest.container, "carol@example.com", (), ())
    _, carol = ingest.container.tokens.create("carol@example.com")
    assert ingest.alerts(carol).status_code == 403


def test_an_alert_document_is_withheld_from_readers_of_its_later_public_event(
    ingest: Ingest,
) -> None:
    # A confidential trigger carries the document; the public resolve that follows
    # carries none, so the alert keeps the confidential document while its latest event
    # (which decides who sees the alert) is public.
    trigger = _alert_event(7, key="nagios://dc1:disk-7", summary="db-7 holds the payroll")
    trigger["data"]["alert"]["severity"] = "info"  # SEV-4: stays unattached
    trigger["imvisibility"] = "confidential"
    assert _post_event(ingest, trigger).status_code == 201
    resolve = {
        "specversion": "1.0",
        "id": "alert-7-resolved",
        "source": "nagios://dc1",
        "type": "im.alert.resolve",
        "time": "2025-12-11T10:40:00Z",
        "imfingerprint": "disk-7",
        "data": {"note": "recovered"},
    }
    assert _post_event(ingest, resolve).status_code == 201

    grant_access(ingest.container, "bob@example.com", ("incident.reader",), ())
    _, bob = ingest.container.tokens.create("bob@example.com")
    (seen_by_bob,) = ingest.alerts(bob, unattached="true").json()["alerts"]
    assert seen_by_bob["key"] == "nagios://dc1:disk-7"
    assert seen_by_bob["status"] == "resolved"
    assert seen_by_bob["alert"] is None
    assert "payroll" not in json.dumps(seen_by_bob)
    # A reader cleared for confidential events sees the document.
    (seen_by_alice,) = ingest.alerts(unattached="true").json()["alerts"]
    assert seen_by_alice["alert"]["summary"] == "db-7 holds the payroll"

    # A public event whose document names the alert only keeps the confidential
    # severity and summary: they stay withheld.
    again = {**resolve, "id": "alert-7-again", "type": "im.alert.trigger"}
    again["data"] = {"alert": {"key": "nagios://dc1:disk-7"}}
    assert _post_event(ingest, again).status_code == 201
    (seen_by_bob,) = ingest.alerts(bob).json()["alerts"]
    assert seen_by_bob["key"] == "nagios://dc1:disk-7"
    assert seen_by_bob["alert"] is None and seen_by_bob["summary"] is None
    assert "payroll" not in json.dumps(seen_by_bob)
    # A public document that replaces everything is public again.
    fresh = {**again, "id": "alert-7-fresh"}
    fresh["data"] = {
        "alert": {"key": "nagios://dc1:disk-7", "severity": "info", "summary": "disk ok"}
    }
    assert _post_event(ingest, fresh).status_code == 201
    (seen_by_bob,) = ingest.alerts(bob).json()["alerts"]
    assert seen_by_bob["summary"] == "disk ok" and seen_by_bob["alert"]["summary"] == "disk ok"


# --- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"nagios": []}, "unknown provider 'nagios'"),
        ({"alertmanager": [{"name": "prod"}]}, "integrations.alertmanager[0].token: missing"),
        ({"pagerduty": [{"name": "x", "secrets": ["short"]}]}, "secrets[0]: must be at least"),
        ({"alertmanager": [{"name": "Prod!", "token": AM_TOKEN}]}, "[0].name"),
        (
            {"alertmanager": [{"name": "a", "token": AM_TOKEN}, {"name": "a", "token": AM_TOKEN}]},
            "[1].name: 'a' is used twice",
        ),
        ({"pagerduty": [{"name": "x", "secret": PD_SECRET_OLD, "url": 1}]}, "unknown key 'url'"),
    ],
)
def test_bad_integrations_name_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(IntegrationsError, match=None) as caught:
        parse_integrations(section)
    assert message in str(caught.value)


def test_integrations_load_from_the_config_file_and_show_masked(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"integrations": INTEGRATIONS}))
    settings = load_configuration({"IM_CONFIG": str(path)})
    shown = json.dumps(settings.masked())
    assert AM_TOKEN not in shown and PD_SECRET_OLD not in shown
    path.write_text(json.dumps({"integrations": {"pagerduty": [{"name": "main"}]}}))
    with pytest.raises(ConfigError, match=r"integrations\.pagerduty\[0\]\.secret: missing"):
        load_configuration({"IM_CONFIG": str(path)})
    assert "pd-signing" not in repr(parse_integrations(INTEGRATIONS).items)


# --- im.alert.* CloudEvents through the timeline endpoint --------------------------------


def _alert_event(n: int, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"alert-{n}",
        "source": "nagios://dc1",
        "type": "im.alert.trigger",
        "time": "2025-12-11T10:30:00Z",
        "data": {
            "alert": {
                "key": f"nagios://dc1/check-{n}",
                "severity": "critical",
                "summary": f"check {n} failing",
                "attributes": {"service": "billing", "error_type": "timeout"},
                **data,
            }
        },
    }


def _post_event(ingest: Ingest, event: dict[str, Any]) -> Any:
    return ingest.client.post(
        "/api/v1/timeline/events",
        json=event,
        headers={
            "Authorization": f"Bearer {ingest.token}",
            "Content-Type": "application/cloudevents+json",
        },
    )


def test_alert_cloudevents_without_an_incident_are_correlated(ingest: Ingest) -> None:
    first = _post_event(ingest, _alert_event(1))
    assert first.status_code == 201, first.text
    incident_id = first.json()["incident_id"]
    assert incident_id is not None and first.json()["position"] is not None
    second = _post_event(ingest, _alert_event(2))
    assert second.status_code == 201
    assert second.json()["incident_id"] == incident_id
    # A replay is a duplicate of the stored (placed) event, not a new alert.
    replay = _post_event(ingest, _alert_event(1))
    assert replay.status_code == 200
    assert replay.json()["created"] is False
    assert replay.json()["incident_id"] == incident_id
    changed = _post_event(ingest, _alert_event(1, summary="something else"))
    assert changed.status_code == 409

    listed = ingest.alerts(incident_id=incident_id).json()["alerts"]
    assert sorted(a["key"] for a in listed) == ["nagios://dc1/check-1", "nagios://dc1/check-2"]
    stored = ingest.container.timeline.get("alert-1")
    assert stored.incident_id == incident_id
    assert orjson.loads(stored.body)["data"]["correlation"]["decision"] == "opened"

    # An alert event that names its incident is appended as it is, next to others.
    resolve = _alert_event(3) | {"type": "im.alert.resolve", "subject": f"incident/{incident_id}"}
    batch = ingest.client.post(
        "/api/v1/timeline/events",
        json=[resolve, _alert_event(4), {**_alert_event(5), "data": "not an object"}],
        headers={
            "Authorization": f"Bearer {ingest.token}",
            "Content-Type": "application/cloudevents-batch+json",
        },
    )
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["status"] for r in results] == [201, 201, 201]
    assert results[0]["incident_id"] == incident_id
    assert results[1]["incident_id"] == incident_id
    # Nothing to correlate on: at the default severity (SEV-3) it opens an incident of its own.
    assert results[2]["incident_id"] not in (None, incident_id)


def test_a_restricted_alert_event_opens_a_restricted_incident_and_stays_hidden(
    ingest: Ingest,
) -> None:
    grant_access(ingest.container, "rita@example.com", ("incident.reader",), attributes=())
    _, rita = ingest.container.tokens.create("rita@example.com")
    alert = {
        "specversion": "1.0",
        "id": "restricted-alert-1",
        "source": "monitoring://vault",
        "type": "im.alert.trigger",
        "imvisibility": "restricted",
        "data": {
            "summary": "Vault unsealed by an unknown operator",
            "severity": "critical",
            "labels": {"alertname": "VaultUnseal", "service": "vault"},
        },
    }
    r = ingest.client.post(
        "/api/v1/timeline/events",
        json=alert,
        headers={
            "Authorization": f"Bearer {ingest.token}",
            "Content-Type": "application/cloudevents+json",
        },
    )
    assert r.status_code == 201, r.text
    incident_id = r.json()["incident_id"]
    opened = ingest.client.get(
        f"/api/v1/incidents/{incident_id}", headers={"Authorization": f"Bearer {ingest.token}"}
    ).json()
    assert opened["classification"] == "restricted"
    hidden = ingest.client.get(
        f"/api/v1/incidents/{incident_id}", headers={"Authorization": f"Bearer {rita}"}
    )
    assert hidden.status_code == 404
    assert ingest.alerts(token=rita).json()["alerts"] == []
    assert len(ingest.alerts().json()["alerts"]) == 1
