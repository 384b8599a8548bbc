"""The sync over HTTP: connectors, an incident's tickets, the conflict queue; and the
connectors section of IM_CONFIG, validated with the key at fault named."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from incidents.app import create_app, load_configuration
from incidents.config import ConfigError
from incidents.incident.commands import ChangeStatus
from incidents.incident.lifecycle import Status
from tests.conftest import grant_access
from tests.contract.sync_support import SN, declare, drain, sn_entry, sync_container
from tests.fakes.servicenow import FakeServiceNow

ALICE = "alice@example.com"


@pytest.fixture
def client(database_url: str, snow: FakeServiceNow) -> Iterator[tuple[TestClient, Any, str]]:
    container = sync_container(database_url, {"servicenow": [sn_entry(snow.url)]})
    grant_access(container, ALICE)
    _, token = container.tokens.create(ALICE)
    with TestClient(create_app(container)) as http:
        assert container.relay is not None and container.poller is not None
        container.relay.stop()
        container.poller.stop()
        yield http, container, token


def test_connectors_tickets_and_conflicts_over_http(
    client: tuple[TestClient, Any, str], snow: FakeServiceNow
) -> None:
    http, container, token = client
    auth = {"Authorization": f"Bearer {token}"}
    assert http.get("/api/v1/connectors").status_code == 401
    incident_id = declare(container)
    drain(container)
    connectors = http.get("/api/v1/connectors", headers=auth).json()["connectors"]
    assert [(c["id"], c["links"], c["outbox_pending"]) for c in connectors] == [(SN, 1, 0)]
    assert "password" not in str(connectors) and "s3cret" not in str(connectors)
    tickets = http.get(f"/api/v1/incidents/{incident_id}/tickets", headers=auth).json()
    record = snow.by_correlation(incident_id)[0]
    assert [(t["connector"], t["key"], t["state"]) for t in tickets["tickets"]] == [
        (SN, record["number"], "linked")
    ]
    assert http.get("/api/v1/incidents/INC-999/tickets", headers=auth).status_code == 404

    container.incidents.execute(ChangeStatus(incident_id, ALICE, None, target=Status.CANCELED))
    drain(container)
    snow.edit(record["sys_id"], state="2")
    container.sync.poll(SN)
    listed = http.get("/api/v1/sync/conflicts", headers=auth).json()["conflicts"]
    assert [(c["field"], c["ours"], c["theirs"]) for c in listed] == [("status", "8", "2")]
    conflict_id = listed[0]["id"]

    bad = http.post(
        f"/api/v1/sync/conflicts/{conflict_id}/resolve", json={"resolution": "mine"}, headers=auth
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["errors"][0]["field"] == "resolution"
    refused = http.post(
        f"/api/v1/sync/conflicts/{conflict_id}/resolve", json={"resolution": "theirs"}, headers=auth
    )
    assert refused.status_code == 409  # canceled is final: the state machine refuses open
    done = http.post(
        f"/api/v1/sync/conflicts/{conflict_id}/resolve", json={"resolution": "ours"}, headers=auth
    )
    assert done.status_code == 200 and done.json()["resolved_by"] == ALICE
    again = http.post(
        f"/api/v1/sync/conflicts/{conflict_id}/resolve", json={"resolution": "ours"}, headers=auth
    )
    assert again.status_code == 409
    assert http.get("/api/v1/sync/conflicts", headers=auth).json()["conflicts"] == []
    drain(container)
    assert snow.by_correlation(incident_id)[0]["state"] == "8"
    bad_state = http.get("/api/v1/sync/conflicts", params={"state": "x"}, headers=auth)
    assert bad_state.status_code == 400 and bad_state.json()["errors"][0]["field"] == "state"


def _config(tmp_path: Path, connectors: Any) -> dict[str, str]:
    path = tmp_path / "im.yaml"
    path.write_text(yaml.safe_dump({"connectors": connectors}))
    return {"IM_CONFIG": str(path)}


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"instance_url": "https://x.service-now.com", "username": "u", "password": "p"}, "name"),
        ({"name": "prod", "username": "u", "password": "p"}, "instance_url"),
        (
            {"name": "prod", "instance_url": "ftp://x", "username": "u", "password": "p"},
            "instance_url",
        ),
        (
            {
                "name": "prod",
                "instance_url": "https://x",
                "username": "u",
                "password": "p",
                "poll_seconds": 0,
            },
            "poll_seconds",
        ),
        (
            {
                "name": "prod",
                "instance_url": "https://x",
                "username": "u",
                "password": "p",
                "colour": "red",
            },
            "colour",
        ),
        (
            {
                "name": "prod",
                "instance_url": "https://x",
                "username": "u",
                "password": "p",
                "field_mappings": {"title": {"conflict_policy": "coin_flip"}},
            },
            "field_mappings.title.conflict_policy",
        ),
        (
            {
                "name": "prod",
                "instance_url": "https://x",
                "username": "u",
                "password": "p",
                "field_mappings": {"x": {"internal_field": "tier", "external_field": "u_tier"}},
            },
            "field_mappings.x.internal_field",
        ),
    ],
)
def test_bad_connector_config_names_the_key(
    tmp_path: Path, entry: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_configuration(_config(tmp_path, {"servicenow": [entry]}))
    assert f"connectors.servicenow[0].{key}" in str(caught.value)
    assert '"p"' not in str(caught.value)


def test_unknown_vendor_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"connectors\.remedy: unknown vendor"):
        load_configuration(_config(tmp_path, {"remedy": []}))


def test_config_show_masks_connector_secrets(tmp_path: Path) -> None:
    entry = {
        "name": "prod",
        "instance_url": "https://x",
        "username": "u",
        "password": "hunter2-password",
    }
    settings = load_configuration(_config(tmp_path, {"servicenow": [entry]}))
    masked = settings.masked()["connectors"]["servicenow"][0]
    assert masked["password"] == "***" and masked["username"] == "u"


def test_graphql_connected_tickets_are_the_real_links(
    client: tuple[TestClient, Any, str], snow: FakeServiceNow
) -> None:
    http, container, token = client
    incident_id = declare(container)
    drain(container)
    query = '{ incident(id: "%s") { connectedTickets { system key url status connector } } }'
    answer = http.post(
        "/graphql",
        json={"query": query % incident_id},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    record = snow.by_correlation(incident_id)[0]
    assert answer["data"]["incident"]["connectedTickets"] == [
        {
            "system": "servicenow",
            "key": record["number"],
            "url": f"{snow.url}/nav_to.do?uri=incident.do?sys_id={record['sys_id']}",
            "status": "2",
            "connector": SN,
        }
    ]


def test_sync_metrics_are_exported(client: tuple[TestClient, Any, str]) -> None:
    http, container, _token = client
    declare(container)
    drain(container)
    text = http.get("/metrics").text
    assert 'sync_operations_total{connector="servicenow:prod",kind="create"} 1.0' in text


def test_a_note_in_a_closed_data_class_reaches_the_ticket_redacted(
    client: tuple[TestClient, Any, str], snow: FakeServiceNow
) -> None:
    http, container, token = client
    incident_id = declare(container)
    drain(container)
    note = {
        "specversion": "1.0",
        "id": "note-pii-1",
        "source": "im://tests",
        "type": "im.note.add",
        "subject": f"incident/{incident_id}",
        "imdataclass": "pii",
        "data": {"text": "call Jane Doe at +1 555 0100"},
    }
    answer = http.post(
        "/api/v1/timeline/events",
        json=note,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/cloudevents+json",
        },
    )
    assert answer.status_code in (200, 201), answer.text
    drain(container)
    sys_id = snow.by_correlation(incident_id)[0]["sys_id"]
    written = [entry["value"] for entry in snow.journal.get(sys_id, [])]
    assert written and all("555" not in text and "Jane" not in text for text in written)
    assert "REDACTED" in written[0]
