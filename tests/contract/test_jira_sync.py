"""Jira Cloud sync end to end against a local REST v3 that refuses what Jira refuses:
create, edits, transitions by name, ADF comments, signed webhooks, JQL polling."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incidents.app import Container, create_app
from incidents.incident.commands import AddNote, Assign, ChangeStatus, Update
from incidents.incident.lifecycle import Status
from incidents.integrations.jira.client import parse_jira_time
from incidents.integrations.jira.signature import sign
from incidents.sync.engine import ConflictError
from incidents.sync.ports import Conflict
from tests.contract.sync_support import dead, declare, drain, pending, sync_container
from tests.fakes.jira import BOT, FakeJira

ALICE = "alice@example.com"
JIRA = "jira:cloud"
SECRET = "a-very-long-webhook-secret"
WEBHOOK = "/api/v1/connectors/jira/cloud/webhook"


@pytest.fixture
def synced(database_url: str, jira: FakeJira) -> Iterator[tuple[Container, TestClient]]:
    entry = {
        "name": "cloud",
        "base_url": jira.url,
        "email": jira.email,
        "api_token": jira.token,
        "project": "OPS",
        "webhook_secret": SECRET,
        "poll_seconds": 3600,
    }
    container = sync_container(
        database_url, {"jira": [entry]}, identities={"jira-cloud@connectors": ()}
    )
    with TestClient(create_app(container)) as http:
        assert container.relay is not None and container.poller is not None
        container.relay.stop()
        container.poller.stop()
        yield container, http


def issue_of(jira: FakeJira, incident_id: str) -> dict[str, Any]:
    found = jira.by_label(f"incidents-{incident_id}")
    assert len(found) == 1, found
    return found[0]


def deliver_webhook(http: TestClient, payload: dict[str, Any], secret: str = SECRET) -> Any:
    body = json.dumps(payload).encode()
    return http.post(
        WEBHOOK,
        content=body,
        headers={"X-Hub-Signature": sign(secret, body), "Content-Type": "application/json"},
    )


def test_create_edit_transition_and_comment(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, _http = synced
    incident_id = declare(container, "Login broken", severity="SEV-2", description="SSO fails")
    drain(container)
    issue = issue_of(jira, incident_id)
    fields = issue["fields"]
    assert fields["summary"] == "Login broken"
    assert fields["description"]["type"] == "doc"
    assert fields["priority"] == {"name": "High"}
    assert fields["status"] == {"name": "In Progress"}
    container.incidents.execute(Update(incident_id, ALICE, None, changes={"title": "SSO down"}))
    container.incidents.execute(ChangeStatus(incident_id, ALICE, None, target=Status.RESOLVED))
    container.incidents.execute(AddNote(incident_id, ALICE, None, text="IdP cert renewed"))
    drain(container)
    fields = issue_of(jira, incident_id)["fields"]
    assert fields["summary"] == "SSO down"
    assert fields["status"] == {"name": "Done"}
    comments = jira.comments[issue["key"]]
    assert [c["body"]["content"][0]["content"][0]["text"] for c in comments] == ["IdP cert renewed"]
    assert comments[0]["author"]["accountId"] == BOT


def test_signed_webhook_brings_an_edit_in_once(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, http = synced
    incident_id = declare(container)
    drain(container)
    key = issue_of(jira, incident_id)["key"]
    history = jira.edit(key, summary="Edited in Jira")
    payload = {
        "webhookEvent": "jira:issue_updated",
        "issue": {"id": "1", "key": key},
        "changelog": {"id": str(history)},
    }
    first = deliver_webhook(http, payload)
    assert first.status_code == 200, first.text
    assert first.json()["pulled"] == ["title"]
    again = deliver_webhook(http, payload)
    assert again.status_code == 200 and again.json()["pulled"] == []
    incident = container.incidents.get(incident_id, None)
    assert incident is not None and incident.title == "Edited in Jira"
    writes = jira.writes()
    drain(container)
    assert jira.writes() == writes  # no echo write
    types = [
        r.type for r in container.reader.in_position_order(10**12) if r.incident_id == incident_id
    ]
    # The link recorded at create, then the edit once (the re-delivery is a dedupe hit).
    assert types == ["im.incident.declare", "im.jira.sync", "im.incident.update", "im.jira.sync"]


def test_webhook_signature_is_checked(synced: tuple[Container, TestClient], jira: FakeJira) -> None:
    container, http = synced
    incident_id = declare(container)
    drain(container)
    key = issue_of(jira, incident_id)["key"]
    jira.edit(key, summary="forged")
    payload = {"webhookEvent": "jira:issue_updated", "issue": {"key": key}}
    bad = deliver_webhook(http, payload, secret="not-the-secret-at-all")
    assert bad.status_code == 403
    assert bad.headers["content-type"].startswith("application/problem+json")
    missing = http.post(WEBHOOK, json=payload)
    assert missing.status_code == 401
    unknown = http.post("/api/v1/connectors/jira/other/webhook", json=payload)
    assert unknown.status_code == 404
    malformed = deliver_webhook(http, {"webhookEvent": "jira:issue_updated"})
    assert malformed.status_code == 422 and malformed.json()["errors"][0]["field"] == "issue.key"
    incident = container.incidents.get(incident_id, None)
    assert incident is not None and incident.title == "Checkout down"


def test_operator_comment_becomes_a_note_once_and_ours_never_echo(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, http = synced
    incident_id = declare(container)
    container.incidents.execute(AddNote(incident_id, ALICE, None, text="from us"))
    drain(container)
    key = issue_of(jira, incident_id)["key"]
    comment_id = jira.comment(key, "customer reports recovery")
    payload = {
        "webhookEvent": "comment_created",
        "issue": {"key": key},
        "comment": {"id": comment_id},
    }
    assert deliver_webhook(http, payload).status_code == 200
    assert deliver_webhook(http, payload).status_code == 200
    drain(container)
    notes = [
        r
        for r in container.reader.in_position_order(10**12)
        if r.incident_id == incident_id and r.type == "im.note.add"
    ]
    assert [n.actor for n in notes] == [ALICE, f"connector:{JIRA}"]
    assert len(jira.comments[key]) == 2  # ours and the operator's: nothing echoed back


def test_jql_polling_is_the_safety_net(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, _http = synced
    incident_id = declare(container)
    drain(container)
    key = issue_of(jira, incident_id)["key"]
    jira.move(key, "Done")  # no webhook arrives
    assert container.sync is not None
    container.sync.poll(JIRA)
    incident = container.incidents.get(incident_id, None)
    assert incident is not None and incident.status == "resolved"


def test_workflow_move_the_state_machine_refuses_is_queued(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, _http = synced
    incident_id = declare(container)
    drain(container)
    key = issue_of(jira, incident_id)["key"]
    jira.move(key, "To Do")  # open -> draft is not a move the incident allows
    assert container.sync is not None
    container.sync.poll(JIRA)
    conflicts = container.sync.store.conflicts(open_only=True)
    assert [(c.field, c.theirs) for c in conflicts] == [("status", "To Do")]
    incident = container.incidents.get(incident_id, None)
    assert incident is not None and incident.status == "open"


def test_jira_rate_limit_is_honoured_and_unlinked_webhooks_are_ignored(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    import time

    container, http = synced
    jira.rate_limited = 1
    jira.retry_after = "1"
    incident_id = declare(container)
    drain(container)
    assert jira.by_label(f"incidents-{incident_id}") == []
    time.sleep(0.3)
    drain(container)
    assert jira.by_label(f"incidents-{incident_id}") == []
    time.sleep(1.0)
    drain(container)
    assert len(jira.by_label(f"incidents-{incident_id}")) == 1
    jira.issues["OPS-999"] = {
        "id": "1",
        "key": "OPS-999",
        "fields": {"summary": "x", "labels": [], "status": {"name": "To Do"}},
        "changelog": [],
    }
    unlinked = deliver_webhook(
        http, {"webhookEvent": "jira:issue_updated", "issue": {"key": "OPS-999"}}
    )
    assert unlinked.status_code == 202


# A workflow with a review step: In Progress cannot go straight to Done.
REVIEW_WORKFLOW = {
    "To Do": [("11", "Start work", "In Progress")],
    "In Progress": [("21", "Back to do", "To Do"), ("51", "Send to review", "In Review")],
    "In Review": [("31", "Approve", "Done"), ("61", "Rework", "In Progress")],
    "Done": [("41", "Reopen", "In Progress")],
}


def _resolve_with_title_into_review_workflow(
    container: Container, jira: FakeJira
) -> tuple[str, str]:
    jira.workflow = {status: list(moves) for status, moves in REVIEW_WORKFLOW.items()}
    incident_id = declare(container)
    drain(container)
    key = issue_of(jira, incident_id)["key"]
    container.incidents.execute(Update(incident_id, ALICE, None, changes={"title": "DB failover"}))
    container.incidents.execute(ChangeStatus(incident_id, ALICE, None, target=Status.RESOLVED))
    drain(container)
    return incident_id, key


def test_status_the_workflow_cannot_reach_is_queued_not_retried(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, _http = synced
    incident_id, key = _resolve_with_title_into_review_workflow(container, jira)
    fields = jira.issues[key]["fields"]
    assert fields["summary"] == "DB failover"  # the other pushed field landed
    assert fields["status"] == {"name": "In Progress"}
    assert pending(container, JIRA) == 0 and dead(container, JIRA) == 0
    assert container.sync is not None
    conflicts = container.sync.store.conflicts(open_only=True)
    assert [(c.field, c.ours, c.theirs) for c in conflicts] == [("status", "Done", "In Progress")]
    assert "In Review" in conflicts[0].reason
    # Held while queued: later deliveries neither retry the move nor fail.
    writes = jira.writes()
    container.incidents.execute(AddNote(incident_id, ALICE, None, text="waiting on review"))
    drain(container)
    assert jira.writes() == writes + 1  # the comment only
    assert pending(container, JIRA) == 0 and dead(container, JIRA) == 0

    container.sync.resolve(conflicts[0].id, "theirs", None, ALICE)
    drain(container)
    incident = container.incidents.get(incident_id, None)
    assert incident is not None and incident.status == "open"
    assert jira.issues[key]["fields"]["status"] == {"name": "In Progress"}
    assert container.sync.store.conflicts(open_only=True) == []
    assert pending(container, JIRA) == 0 and dead(container, JIRA) == 0


def test_unreachable_status_resolved_with_a_value_once_the_workflow_allows_it(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, _http = synced
    incident_id, key = _resolve_with_title_into_review_workflow(container, jira)
    assert container.sync is not None
    (conflict,) = container.sync.store.conflicts(open_only=True)
    jira.workflow["In Progress"].append(("31", "Finish", "Done"))  # an admin fixes it
    container.sync.resolve(conflict.id, "value", "closed", ALICE)
    drain(container)
    incident = container.incidents.get(incident_id, None)
    assert incident is not None and incident.status == "closed"
    assert jira.issues[key]["fields"]["status"] == {"name": "Done"}
    assert container.sync.store.conflicts(open_only=True) == []
    assert pending(container, JIRA) == 0 and dead(container, JIRA) == 0


def test_new_issue_whose_workflow_cannot_reach_the_status_is_linked_once_and_queued(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, _http = synced
    jira.workflow = {"To Do": [("71", "Triage", "Triage")], "Triage": []}
    incident_id = declare(container)
    drain(container)
    drain(container)
    issue = issue_of(jira, incident_id)  # exactly one issue, linked
    assert container.sync is not None
    link = container.sync.store.link(JIRA, incident_id)
    assert link is not None and link.external_id == issue["key"]
    conflicts = container.sync.store.conflicts(open_only=True)
    assert [(c.field, c.ours, c.theirs) for c in conflicts] == [("status", "In Progress", "To Do")]
    assert "Triage" in conflicts[0].reason
    assert pending(container, JIRA) == 0 and dead(container, JIRA) == 0


def test_assignee_goes_out_as_the_account_id_and_comes_back_as_our_email(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, http = synced
    dana = jira.add_user("dana@example.com", "Dana Ortiz")
    erin = jira.add_user("erin@example.com", "Erin Vance")
    incident_id = declare(container)
    container.incidents.execute(Assign(incident_id, ALICE, None, add=("dana@example.com",)))
    drain(container)
    key = issue_of(jira, incident_id)["key"]
    assert jira.issues[key]["fields"]["assignee"]["accountId"] == dana
    history = jira.edit(key, assignee=erin)  # an operator reassigns in Jira
    writes = jira.writes()
    payload = {
        "webhookEvent": "jira:issue_updated",
        "issue": {"key": key},
        "changelog": {"id": str(history)},
    }
    answer = deliver_webhook(http, payload)
    assert answer.status_code == 200 and answer.json()["pulled"] == ["assignee"]
    drain(container)
    incident = container.incidents.get(incident_id, None)
    assert incident is not None and incident.assignees == ["erin@example.com"]
    assert jira.writes() == writes  # no echo write


def test_jira_user_hiding_their_email_or_unknown_to_jira_is_queued(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, _http = synced
    hidden = jira.add_user("frank@example.com", "Frank Ito", hidden=True)
    first = declare(container, "API errors")
    second = declare(container, "Queue backlog")
    drain(container)
    key = issue_of(jira, first)["key"]
    jira.edit(key, assignee=hidden)
    assert container.sync is not None
    container.sync.poll(JIRA)
    incident = container.incidents.get(first, None)
    assert incident is not None and incident.assignees == []
    (conflict,) = container.sync.store.conflicts(open_only=True)
    assert (conflict.incident_id, conflict.field, conflict.theirs) == (first, "assignee", hidden)
    assert "hides their email" in conflict.reason

    # Outbound: someone Jira shows no user for (even one whose email is hidden).
    container.incidents.execute(Assign(second, ALICE, None, add=("frank@example.com",)))
    container.incidents.execute(Update(second, ALICE, None, changes={"title": "Queue stuck"}))
    drain(container)
    fields = issue_of(jira, second)["fields"]
    assert fields["summary"] == "Queue stuck" and fields["assignee"] is None
    assert pending(container, JIRA) == 0 and dead(container, JIRA) == 0
    queued = [c for c in container.sync.store.conflicts(open_only=True) if c.incident_id == second]
    assert [(c.field, c.ours) for c in queued] == [("assignee", "frank@example.com")]
    assert "no Jira user shows the email" in queued[0].reason


def test_theirs_is_refused_for_a_hidden_user_even_once_the_issue_moved_on(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, _http = synced
    hidden = jira.add_user("frank@example.com", "Frank Ito", hidden=True)
    bob = jira.add_user("bob@example.com", "Bob Lane")
    incident_id = declare(container)
    drain(container)
    key = issue_of(jira, incident_id)["key"]
    jira.edit(key, assignee=hidden)
    assert container.sync is not None
    container.sync.poll(JIRA)
    (conflict,) = container.sync.store.conflicts(open_only=True)
    assert conflict.theirs == hidden
    jira.edit(key, assignee=bob)  # the issue no longer shows the hidden user
    container.sync.poll(JIRA)
    with pytest.raises(ConflictError, match=r"cannot be taken.*hides their email"):
        container.sync.resolve(conflict.id, "theirs", None, ALICE)
    incident = container.incidents.get(incident_id, None)
    assert incident is not None and incident.assignees == []
    assert [c.id for c in container.sync.store.conflicts(open_only=True)] == [conflict.id]


def test_theirs_naming_a_vendor_user_now_known_applies_their_email(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, _http = synced
    dana = jira.add_user("Dana@Example.com", "Dana Ortiz")
    incident_id = declare(container)
    drain(container)
    assert container.sync is not None
    # Queued while Dana's profile hid her email; she has shown it since.
    queued = container.sync.store.open_conflict(
        Conflict(
            id="c-dana",
            connector=JIRA,
            incident_id=incident_id,
            field="assignee",
            ours=None,
            theirs=dana,
            base=None,
            reason="the Jira user 'Dana Ortiz' hides their email address",
            created_us=1,
        )
    )
    resolved = container.sync.resolve(queued.id, "theirs", None, ALICE)
    incident = container.incidents.get(incident_id, None)
    assert incident is not None and incident.assignees == ["dana@example.com"]
    assert resolved.resolved_value == "dana@example.com"
    writes = jira.writes()
    drain(container)
    container.sync.poll(JIRA)
    assert jira.writes() == writes  # both sides agree: nothing to push


def test_a_user_hiding_their_email_on_many_issues_is_looked_up_once_a_while(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, _http = synced
    hidden = jira.add_user("gil@example.com", "Gil Moss", hidden=True)
    incidents = [declare(container, f"Outage {n}") for n in range(3)]
    drain(container)
    for incident_id in incidents:
        jira.edit(issue_of(jira, incident_id)["key"], assignee=hidden)
    assert container.sync is not None
    container.sync.poll(JIRA)
    container.sync.poll(JIRA)
    lookups = [r for r in jira.requests if r == ("GET", "/rest/api/3/user")]
    assert len(lookups) == 1
    queued = container.sync.store.conflicts(open_only=True)
    assert sorted(c.incident_id for c in queued) == sorted(incidents)


def test_fake_jira_refuses_an_unknown_account_as_assignee(jira: FakeJira) -> None:
    import httpx

    body = {
        "fields": {
            "project": {"key": "OPS"},
            "summary": "x",
            "issuetype": {"name": "Task"},
            "assignee": {"accountId": "557058:nobody"},
        }
    }
    answer = httpx.post(f"{jira.url}/rest/api/3/issue", json=body, auth=(jira.email, jira.token))
    assert answer.status_code == 400 and "assignee" in answer.json()["errors"]


def _connector_notes(container: Container, incident_id: str) -> list[str]:
    return [
        str(json.loads(row.body)["data"]["text"])
        for row in container.reader.in_position_order(10**12)
        if row.incident_id == incident_id
        and row.type == "im.note.add"
        and row.actor == f"connector:{JIRA}"
    ]


def _driven_clock(jira: FakeJira) -> list[float]:
    now = [1_800_000_000.0]
    jira.clock = lambda: now[0]
    return now


def test_edited_comment_arrives_by_signed_webhook_once(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, http = synced
    now = _driven_clock(jira)
    incident_id = declare(container)
    container.incidents.execute(AddNote(incident_id, ALICE, None, text="from us"))
    drain(container)
    key = issue_of(jira, incident_id)["key"]
    ours = jira.comments[key][0]["id"]
    comment_id = jira.comment(key, "customer reports recovery")
    created = {
        "webhookEvent": "comment_created",
        "issue": {"key": key},
        "comment": {"id": comment_id},
    }
    assert deliver_webhook(http, created).status_code == 200
    now[0] += 90
    jira.edit_comment(key, comment_id, "customer reports partial recovery")
    jira.edit_comment(key, ours, "from us (edited in Jira)")  # ours: never taken back
    edited = {
        "webhookEvent": "comment_updated",
        "issue": {"key": key},
        "comment": {"id": comment_id},
    }
    assert deliver_webhook(http, edited).status_code == 200
    assert deliver_webhook(http, edited).status_code == 200  # a redelivery
    assert _connector_notes(container, incident_id) == [
        "customer reports recovery",
        f"(edits ticket comment {comment_id}, noted earlier) customer reports partial recovery",
    ]
    stamp = parse_jira_time(jira.comments[key][1]["updated"])
    ids = [
        r.event_id
        for r in container.reader.in_position_order(10**12)
        if r.incident_id == incident_id and r.type == "im.jira.sync"
    ]
    assert f"{JIRA}:{key}:comment:{comment_id}:{stamp}" in ids
    comments = len(jira.comments[key])
    drain(container)
    assert len(jira.comments[key]) == comments  # the edit note is not echoed to Jira


def test_edited_comment_arrives_by_polling_once(
    synced: tuple[Container, TestClient], jira: FakeJira
) -> None:
    container, _http = synced
    now = _driven_clock(jira)
    incident_id = declare(container)
    drain(container)
    key = issue_of(jira, incident_id)["key"]
    comment_id = jira.comment(key, "rollback started")  # no webhook arrives
    assert container.sync is not None
    container.sync.poll(JIRA)
    container.sync.poll(JIRA)
    assert _connector_notes(container, incident_id) == ["rollback started"]
    now[0] += 90
    jira.edit_comment(key, comment_id, "rollback finished")
    container.sync.poll(JIRA)
    container.sync.poll(JIRA)
    assert _connector_notes(container, incident_id) == [
        "rollback started",
        f"(edits ticket comment {comment_id}, noted earlier) rollback finished",
    ]
    now[0] += 90
    jira.edit_comment(key, comment_id, "rollback finished at 10:42")
    container.sync.poll(JIRA)
    assert _connector_notes(container, incident_id)[-1].endswith("rollback finished at 10:42")
    assert len(_connector_notes(container, incident_id)) == 3
