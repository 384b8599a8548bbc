"""ServiceNow sync end to end, against a local Table API that refuses what the vendor
refuses, on both backends."""

from __future__ import annotations

import time

import pytest

from incidents.app import Container
from incidents.incident.commands import AddNote, Assign, ChangeStatus, Escalate, Update
from incidents.incident.lifecycle import Status
from incidents.sync.engine import ConflictError, SyncEngine
from tests.contract.sync_support import (
    SN,
    dead,
    declare,
    drain,
    pending,
    sn_entry,
    sync_container,
)
from tests.fakes.servicenow import FakeServiceNow

ALICE = "alice@example.com"


def engine_of(container: Container) -> SyncEngine:
    assert container.sync is not None
    return container.sync


def ticket_of(snow: FakeServiceNow, incident_id: str) -> dict[str, object]:
    records = snow.by_correlation(incident_id)
    assert len(records) == 1, records
    return records[0]


def sync_events(container: Container, incident_id: str) -> list[str]:
    return [
        row.type
        for row in container.reader.in_position_order(10**12)
        if row.incident_id == incident_id and row.type == "im.servicenow.sync"
    ]


def all_types(container: Container, incident_id: str) -> list[str]:
    return [
        r.type for r in container.reader.in_position_order(10**12) if r.incident_id == incident_id
    ]


def test_declare_creates_one_ticket_with_mapped_fields(
    synced: Container, snow: FakeServiceNow
) -> None:
    incident_id = declare(synced, "Checkout down", severity="SEV-1", description="500s")
    drain(synced)
    record = ticket_of(snow, incident_id)
    assert record["short_description"] == "Checkout down"
    assert record["description"] == "500s"
    assert (record["impact"], record["urgency"], record["state"]) == ("1", "1", "2")
    link = engine_of(synced).store.link(SN, incident_id)
    assert link is not None and link.key == record["number"]
    assert pending(synced, SN) == 0


def test_create_is_idempotent_when_the_answer_is_lost(
    synced: Container, snow: FakeServiceNow
) -> None:
    snow.lose_create_answers = 1  # the vendor stores the record, the answer is lost
    incident_id = declare(synced)
    for _ in range(3):
        drain(synced)
        time.sleep(0.05)
    # The link records the create before the call: the retry looks the ticket up by
    # correlation_id instead of creating a second one.
    assert len(snow.by_correlation(incident_id)) == 1
    assert snow.writes("POST") == 1
    link = engine_of(synced).store.link(SN, incident_id)
    assert link is not None and not link.creating


def test_a_killed_relay_retrying_never_creates_a_second_ticket(
    synced: Container, snow: FakeServiceNow
) -> None:
    incident_id = declare(synced)
    # Delivered twice (the relay died after the call, before marking the row).
    engine_of(synced).deliver(SN, incident_id, fields=True)
    engine_of(synced).deliver(SN, incident_id, fields=True)
    drain(synced)
    assert len(snow.by_correlation(incident_id)) == 1
    assert snow.writes("POST") == 1


def test_changes_flow_out_through_the_outbox(synced: Container, snow: FakeServiceNow) -> None:
    incident_id = declare(synced, severity="SEV-3")
    drain(synced)
    bob = snow.add_user("bob.jones", "bob@example.com")
    writes_before = snow.writes()
    run = synced.incidents.execute
    run(Update(incident_id, ALICE, None, changes={"title": "Checkout degraded"}))
    run(Escalate(incident_id, ALICE, None, severity="SEV-1"))
    run(Assign(incident_id, ALICE, None, add=("bob@example.com",)))
    run(AddNote(incident_id, ALICE, None, text="rolled back 4.2"))
    drain(synced)
    record = ticket_of(snow, incident_id)
    assert record["short_description"] == "Checkout degraded"
    assert (record["impact"], record["urgency"]) == ("1", "1")
    assert record["assigned_to"] == bob  # the sys_user reference
    assert [n["value"] for n in snow.journal[str(record["sys_id"])]] == ["rolled back 4.2"]
    # One batch: one write for the field group, one for the note.
    assert snow.writes() - writes_before == 2


def test_resolve_sends_close_code_the_vendor_requires(
    synced: Container, snow: FakeServiceNow
) -> None:
    incident_id = declare(synced)
    drain(synced)
    synced.incidents.execute(ChangeStatus(incident_id, ALICE, None, target=Status.RESOLVED))
    drain(synced)
    record = ticket_of(snow, incident_id)
    assert record["state"] == "6"
    assert record["close_code"] == "Solved (Permanently)"


def test_the_fake_refuses_a_resolve_without_close_code(snow: FakeServiceNow) -> None:
    import httpx

    answer = httpx.post(
        f"{snow.url}/api/now/table/incident",
        json={"short_description": "x", "state": "6"},
        auth=("svc-incidents", "s3cret-pass"),
    )
    assert answer.status_code == 403
    assert "mandatory" in answer.json()["error"]["detail"]
    assert httpx.get(f"{snow.url}/api/now/table/incident").status_code == 401


def test_rate_limit_retry_after_is_honoured(synced: Container, snow: FakeServiceNow) -> None:
    snow.rate_limited = 1
    snow.retry_after = "1"
    incident_id = declare(synced)
    drain(synced)
    assert snow.by_correlation(incident_id) == []
    # Backoff alone would retry within 20 ms; the vendor asked for a second.
    time.sleep(0.3)
    drain(synced)
    assert snow.by_correlation(incident_id) == []
    time.sleep(1.0)
    drain(synced)
    assert len(snow.by_correlation(incident_id)) == 1


def test_echo_of_our_write_produces_no_event_and_no_write(
    synced: Container, snow: FakeServiceNow
) -> None:
    incident_id = declare(synced)
    drain(synced)
    synced.incidents.execute(Update(incident_id, ALICE, None, changes={"title": "New title"}))
    drain(synced)
    events_before = all_types(synced, incident_id)
    writes_before = snow.writes()
    engine_of(synced).poll(SN)
    drain(synced)
    engine_of(synced).poll(SN)
    drain(synced)
    assert all_types(synced, incident_id) == events_before
    assert snow.writes() == writes_before


def test_operator_edit_comes_in_once_with_a_deterministic_event(
    synced: Container, snow: FakeServiceNow
) -> None:
    incident_id = declare(synced)
    drain(synced)
    sys_id = str(ticket_of(snow, incident_id)["sys_id"])
    snow.edit(sys_id, short_description="Payment provider outage")
    writes_before = snow.writes()
    engine_of(synced).poll(SN)
    engine_of(synced).poll(SN)  # the overlap window sees it again: a dedupe hit
    drain(synced)
    incident = synced.incidents.get(incident_id, None)
    assert incident is not None and incident.title == "Payment provider outage"
    rows = [r for r in synced.reader.in_position_order(10**12) if r.type == "im.servicenow.sync"]
    # The link recorded at create, then the operator's edit, once.
    assert [r.event_id for r in rows] == [f"{SN}:{sys_id}:linked", f"{SN}:{sys_id}:1"]
    assert snow.writes() == writes_before  # the pulled title is not written back


def test_a_state_the_state_machine_refuses_goes_to_the_queue(
    synced: Container, snow: FakeServiceNow
) -> None:
    incident_id = declare(synced)
    drain(synced)
    synced.incidents.execute(ChangeStatus(incident_id, ALICE, None, target=Status.CANCELED))
    drain(synced)
    sys_id = str(ticket_of(snow, incident_id)["sys_id"])
    # Canceled is final here; the operator reopens the ticket.
    snow.edit(sys_id, state="2")
    engine_of(synced).poll(SN)
    conflicts = engine_of(synced).store.conflicts(open_only=True)
    assert [(c.incident_id, c.field, c.theirs) for c in conflicts] == [(incident_id, "status", "2")]
    incident = synced.incidents.get(incident_id, None)
    assert incident is not None and incident.status == "canceled"
    # Resolving with ours pushes our state back to the ticket.
    engine_of(synced).resolve(conflicts[0].id, "ours", None, ALICE)
    drain(synced)
    assert ticket_of(snow, incident_id)["state"] == "8"
    assert engine_of(synced).store.conflicts(open_only=True) == []


def test_internal_owned_field_edited_on_the_ticket_is_repaired(
    synced: Container, snow: FakeServiceNow
) -> None:
    incident_id = declare(synced, severity="SEV-2")
    drain(synced)
    sys_id = str(ticket_of(snow, incident_id)["sys_id"])
    snow.edit(sys_id, impact="3")
    engine_of(synced).poll(SN)
    drain(synced)
    assert ticket_of(snow, incident_id)["impact"] == "2"
    incident = synced.incidents.get(incident_id, None)
    assert incident is not None and incident.severity == "SEV-2"


def test_confidential_incident_is_not_copied_to_a_ticket(
    synced: Container, snow: FakeServiceNow
) -> None:
    incident_id = declare(synced, classification="confidential")
    drain(synced)
    assert snow.by_correlation(incident_id) == []
    assert engine_of(synced).store.link(SN, incident_id) is None


def test_restricted_note_is_not_copied(synced: Container, snow: FakeServiceNow) -> None:
    incident_id = declare(synced)
    drain(synced)
    synced.incidents.execute(
        AddNote(incident_id, ALICE, None, text="customer list", visibility="restricted")
    )
    synced.incidents.execute(AddNote(incident_id, ALICE, None, text="public note"))
    drain(synced)
    sys_id = str(ticket_of(snow, incident_id)["sys_id"])
    assert [n["value"] for n in snow.journal[sys_id]] == ["public note"]


@pytest.mark.parametrize(
    ("policy", "expected_title"),
    [
        ("internal_wins", "ours"),
        ("external_wins", "theirs"),
        ("most_recent_allowed", "theirs"),
        ("manual", None),
    ],
)
def test_simultaneous_edits_under_each_policy(
    database_url: str, snow: FakeServiceNow, policy: str, expected_title: str | None
) -> None:
    mappings = {"title": {"conflict_policy": policy}}
    container = sync_container(
        database_url, {"servicenow": [sn_entry(snow.url, field_mappings=mappings)]}
    )
    try:
        incident_id = declare(container, "base")
        drain(container)
        sys_id = str(ticket_of(snow, incident_id)["sys_id"])
        container.incidents.execute(Update(incident_id, ALICE, None, changes={"title": "ours"}))
        # The ticket's edit is later than ours (most_recent_allowed picks it).
        snow.clock = lambda: time.time() + 5
        snow.edit(sys_id, short_description="theirs")
        drain(container)
        engine_of(container).poll(SN)
        drain(container)
        incident = container.incidents.get(incident_id, None)
        assert incident is not None
        record = ticket_of(snow, incident_id)
        if expected_title is None:
            conflicts = engine_of(container).store.conflicts(open_only=True)
            assert [(c.field, c.ours, c.theirs) for c in conflicts] == [("title", "ours", "theirs")]
            assert (incident.title, record["short_description"]) == ("ours", "theirs")
            engine_of(container).resolve(conflicts[0].id, "value", "merged", ALICE)
            drain(container)
            incident = container.incidents.get(incident_id, None)
            assert incident is not None
            expected_title = "merged"
            record = ticket_of(snow, incident_id)
        assert incident.title == expected_title
        assert record["short_description"] == expected_title
    finally:
        container.close()


def test_reconcile_repairs_drift(synced: Container, snow: FakeServiceNow) -> None:
    incident_id = declare(synced, severity="SEV-2")
    drain(synced)
    sys_id = str(ticket_of(snow, incident_id)["sys_id"])
    # Drift behind the poller's back: edits it never saw (the cursor is past them).
    engine_of(synced).poll(SN)
    snow.edit(sys_id, urgency="3", description="edited on the ticket")
    drift = engine_of(synced).reconcile(SN, dry_run=True)
    assert {(d.field, d.action) for d in drift} == {("urgency", "push"), ("description", "pull")}
    assert ticket_of(snow, incident_id)["urgency"] == "3"
    engine_of(synced).reconcile(SN, dry_run=False)
    drain(synced)
    assert ticket_of(snow, incident_id)["urgency"] == "1"
    incident = synced.incidents.get(incident_id, None)
    assert incident is not None and incident.description == "edited on the ticket"
    assert engine_of(synced).reconcile(SN, dry_run=True) == []


def test_relay_killed_between_the_vendor_call_and_the_link_adopts_the_ticket(
    synced: Container, snow: FakeServiceNow
) -> None:
    from incidents.events.timeformat import now_micros

    engine = engine_of(synced)
    incident_id = declare(synced)
    # What a relay killed mid-create leaves: the link recorded as creating (a minute
    # ago), the ticket made on the vendor's side, the answer never stored.
    assert engine.store.begin_create(SN, incident_id, now_micros() - 60_000_000)
    engine.bound(SN).client.create({"short_description": "Checkout down"}, incident_id)
    drain(synced)
    assert len(snow.by_correlation(incident_id)) == 1
    link = engine.store.link(SN, incident_id)
    assert link is not None and not link.creating
    assert link.external_id == snow.by_correlation(incident_id)[0]["sys_id"]


def test_a_create_still_in_flight_elsewhere_is_not_repeated(
    synced: Container, snow: FakeServiceNow
) -> None:
    from incidents.events.timeformat import now_micros
    from incidents.sync.engine import SyncError

    engine = engine_of(synced)
    incident_id = declare(synced)
    # Another relay recorded the create a moment ago and is calling the vendor now.
    assert engine.store.begin_create(SN, incident_id, now_micros())
    with pytest.raises(SyncError, match="in flight"):
        engine.deliver(SN, incident_id, fields=True)
    assert snow.by_correlation(incident_id) == []


def test_the_background_poller_brings_edits_in(database_url: str, snow: FakeServiceNow) -> None:
    from tests.contract.sync_support import wait_for

    container = sync_container(database_url, {"servicenow": [sn_entry(snow.url, poll_seconds=1)]})
    try:
        incident_id = declare(container)
        drain(container)
        sys_id = str(ticket_of(snow, incident_id)["sys_id"])
        snow.edit(sys_id, short_description="Seen by the poller")
        assert container.poller is not None
        container.poller.start()

        def applied() -> bool:
            incident = container.incidents.get(incident_id, None)
            polled = engine_of(container).store.status(SN).last_poll_us is not None
            return polled and incident is not None and incident.title == "Seen by the poller"

        # The poll is recorded once all its tickets are taken in: wait for both.
        wait_for(applied, timeout=10)
        assert engine_of(container).store.status(SN).last_error is None
    finally:
        container.close()


def test_operator_work_note_becomes_a_note_once_and_ours_never_echo(
    synced: Container, snow: FakeServiceNow
) -> None:
    incident_id = declare(synced)
    synced.incidents.execute(AddNote(incident_id, ALICE, None, text="from us"))
    drain(synced)
    sys_id = str(ticket_of(snow, incident_id)["sys_id"])
    snow.edit(sys_id, work_notes="vendor confirms the fix")
    engine_of(synced).poll(SN)
    engine_of(synced).poll(SN)
    drain(synced)
    notes = [
        r
        for r in synced.reader.in_position_order(10**12)
        if r.incident_id == incident_id and r.type == "im.note.add"
    ]
    assert [n.actor for n in notes] == [ALICE, f"connector:{SN}"]
    assert [e["value"] for e in snow.journal[sys_id]] == ["from us", "vendor confirms the fix"]


def test_a_correlation_prefix_keeps_installations_apart(
    database_url: str, snow: FakeServiceNow
) -> None:
    # Another installation (staging) already has a ticket for its own INC-1.
    other = snow._create({"short_description": "staging incident"}, "svc-incidents")[1]
    snow.records[other["result"]["sys_id"]]["correlation_id"] = "staging:INC-1"
    entry = sn_entry(snow.url, correlation_prefix="prod:")
    container = sync_container(database_url, {"servicenow": [entry]})
    try:
        incident_id = declare(container, "prod incident")
        drain(container)
        mine = snow.by_correlation(f"prod:{incident_id}")
        assert [r["short_description"] for r in mine] == ["prod incident"]
        assert snow.by_correlation("staging:INC-1")[0]["short_description"] == "staging incident"
        engine_of(container).poll(SN)  # the other installation's ticket is left alone
        incident = container.incidents.get(incident_id, None)
        assert incident is not None and incident.title == "prod incident"
    finally:
        container.close()


def test_a_worker_delivers_connector_rows_when_servers_do_not(
    database_url: str, snow: FakeServiceNow
) -> None:
    from incidents.app import ConnectorWorker, build_container, build_worker
    from tests.conftest import grant_access, make_settings
    from tests.contract.sync_support import SN_IDENTITY, wait_for

    connectors = {"servicenow": [sn_entry(snow.url)]}
    server = build_container(make_settings(database_url, connectors=connectors, outbox_relay=False))
    server.start()
    grant_access(server, SN_IDENTITY, roles=("incident.reader",), attributes=())
    worker = build_worker(
        make_settings(database_url, connectors=connectors, outbox_poll_seconds=0.05)
    )
    assert isinstance(worker, ConnectorWorker)
    worker.start()
    try:
        assert server.relay is None
        incident_id = declare(server)
        wait_for(lambda: len(snow.by_correlation(incident_id)) == 1, timeout=10)
    finally:
        worker.close()
        server.close()


def test_operator_reassigning_in_servicenow_comes_back_as_our_email(
    synced: Container, snow: FakeServiceNow
) -> None:
    bob = snow.add_user("bob.jones", "Bob@Example.com")
    carol = snow.add_user("carol.ng", "carol@example.com")
    incident_id = declare(synced)
    synced.incidents.execute(Assign(incident_id, ALICE, None, add=("bob@example.com",)))
    drain(synced)
    sys_id = str(ticket_of(snow, incident_id)["sys_id"])
    assert ticket_of(snow, incident_id)["assigned_to"] == bob
    recorded = all_types(synced, incident_id)
    engine_of(synced).poll(SN)  # our own assignment read back: no event
    assert all_types(synced, incident_id) == recorded
    snow.edit(sys_id, assigned_to=carol)
    writes_before = snow.writes()
    engine_of(synced).poll(SN)
    drain(synced)
    incident = synced.incidents.get(incident_id, None)
    assert incident is not None and incident.assignees == ["carol@example.com"]
    assigns = [
        r
        for r in synced.reader.in_position_order(10**12)
        if r.incident_id == incident_id and r.type == "im.incident.assign"
    ]
    assert [a.actor for a in assigns] == [ALICE, f"connector:{SN}"]
    assert snow.writes() == writes_before  # nothing echoed back


def test_assigning_someone_servicenow_does_not_know_is_queued(
    synced: Container, snow: FakeServiceNow
) -> None:
    incident_id = declare(synced)
    drain(synced)
    run = synced.incidents.execute
    run(Update(incident_id, ALICE, None, changes={"title": "Checkout degraded"}))
    run(Assign(incident_id, ALICE, None, add=("nobody@example.com",)))
    drain(synced)
    record = ticket_of(snow, incident_id)
    assert record["short_description"] == "Checkout degraded"  # the rest landed
    assert record["assigned_to"] == ""
    assert pending(synced, SN) == 0 and dead(synced, SN) == 0
    conflicts = engine_of(synced).store.conflicts(open_only=True)
    assert [(c.field, c.ours) for c in conflicts] == [("assignee", "nobody@example.com")]
    assert "no ServiceNow user" in conflicts[0].reason


def test_servicenow_user_without_an_email_is_queued_not_guessed(
    synced: Container, snow: FakeServiceNow
) -> None:
    batch = snow.add_user("svc.batch")  # an account with no email
    incident_id = declare(synced)
    drain(synced)
    sys_id = str(ticket_of(snow, incident_id)["sys_id"])
    snow.edit(sys_id, assigned_to=batch)
    engine_of(synced).poll(SN)
    incident = synced.incidents.get(incident_id, None)
    assert incident is not None and incident.assignees == []
    conflicts = engine_of(synced).store.conflicts(open_only=True)
    assert [(c.field, c.theirs) for c in conflicts] == [("assignee", batch)]
    assert "svc.batch" in conflicts[0].reason and "no email" in conflicts[0].reason
    with pytest.raises(ConflictError, match="cannot be taken"):
        engine_of(synced).resolve(conflicts[0].id, "theirs", None, ALICE)
    engine_of(synced).resolve(conflicts[0].id, "ours", None, ALICE)
    drain(synced)
    assert ticket_of(snow, incident_id)["assigned_to"] == ""  # ours: nobody assigned
    assert engine_of(synced).store.conflicts(open_only=True) == []


def test_the_fake_reads_or_conditions_as_the_instance_does(snow: FakeServiceNow) -> None:
    import httpx

    admin = snow.add_user("admin", "admin@example.com")
    snow.add_user("ann.lee", "ann@example.com")
    query = "email=nobody@example.com^ORuser_name=admin"
    answer = httpx.get(
        f"{snow.url}/api/now/table/sys_user",
        params={"sysparm_query": query},
        auth=(snow.username, snow.password),
    )
    assert [u["sys_id"] for u in answer.json()["result"]] == [admin]


@pytest.mark.parametrize(
    "assignee",
    [
        "x@y.z^ORuser_name=admin",
        "x@y.z^NQuser_name=admin",
        "x y@example.com",
        "x@example.com\nuser_name=admin",
    ],
)
def test_an_assignee_that_is_no_plain_email_never_reaches_a_user_query(
    synced: Container, snow: FakeServiceNow, assignee: str
) -> None:
    snow.add_user("admin", "admin@example.com")
    incident_id = declare(synced)
    drain(synced)
    synced.incidents.execute(Assign(incident_id, ALICE, None, add=(assignee,)))
    drain(synced)
    assert ticket_of(snow, incident_id)["assigned_to"] == ""
    assert pending(synced, SN) == 0 and dead(synced, SN) == 0
    conflicts = engine_of(synced).store.conflicts(open_only=True)
    assert [(c.field, c.ours) for c in conflicts] == [("assignee", assignee)]
    assert "not a plain email address" in conflicts[0].reason


def test_a_user_row_of_another_email_is_not_taken_for_the_one_asked(
    synced: Container, snow: FakeServiceNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = snow.add_user("admin", "admin@example.com")
    # An instance answering with a row the query did not ask for (a business rule,
    # a query the instance reads differently): the email must match the one asked.
    query = snow._query

    def answer(text: str, table: dict[str, dict[str, object]] | None = None) -> list[object]:
        return [snow.users[admin]] if table is snow.users else query(text, table)

    monkeypatch.setattr(snow, "_query", answer)
    incident_id = declare(synced)
    drain(synced)
    synced.incidents.execute(Assign(incident_id, ALICE, None, add=("eve@example.com",)))
    drain(synced)
    assert ticket_of(snow, incident_id)["assigned_to"] == ""
    conflicts = engine_of(synced).store.conflicts(open_only=True)
    assert [(c.field, c.ours) for c in conflicts] == [("assignee", "eve@example.com")]
    assert "no ServiceNow user" in conflicts[0].reason


def test_per_incident_locks_do_not_accumulate(synced: Container, snow: FakeServiceNow) -> None:
    ids = [declare(synced, f"Incident {n}") for n in range(12)]
    drain(synced)
    for incident_id in ids:
        snow.edit(str(ticket_of(snow, incident_id)["sys_id"]), short_description="edited")
    engine_of(synced).poll(SN)
    engine_of(synced).reconcile(SN, dry_run=False)
    assert len(engine_of(synced).store.links(SN)) == 12
    assert engine_of(synced).locks_in_use == 0
