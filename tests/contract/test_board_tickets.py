"""Linked tickets on status boards, from real sync events against the local ServiceNow."""

from __future__ import annotations

from typing import Any

import pytest

from incidents.app import Container
from incidents.boards.personas import Persona
from incidents.sync.apply import ApplyExternal
from tests.conftest import grant_access
from tests.contract.sync_support import SN, declare, drain
from tests.fakes.servicenow import FakeServiceNow

READER = "reader@example.com"


@pytest.fixture(autouse=True)
def reader(synced: Container) -> None:
    grant_access(synced, READER)


def board(container: Container, incident_id: str, persona: Persona) -> dict[str, Any]:
    decision = container.policy.decide(READER)
    found = container.boards.board(incident_id, persona, decision)
    assert found is not None
    return found


def ticket_keys(found: dict[str, Any]) -> list[str]:
    return [entry["data"]["key"] for entry in found["tickets"]]


def test_a_created_ticket_is_on_the_board_once_with_its_link(
    synced: Container, snow: FakeServiceNow
) -> None:
    incident_id = declare(synced, severity="SEV-1")
    assert ticket_keys(board(synced, incident_id, Persona.RESPONDER)) == []
    drain(synced)
    drain(synced)  # a second delivery of the same rows records nothing new
    (record,) = snow.by_correlation(incident_id)
    found = board(synced, incident_id, Persona.RESPONDER)
    assert ticket_keys(found) == [record["number"]]
    (entry,) = found["tickets"]
    assert entry["event_type"] == "im.servicenow.sync"
    assert entry["data"]["linked"] is True
    assert entry["data"]["url"].startswith(snow.url)
    assert ticket_keys(board(synced, incident_id, Persona.COMMANDER)) == [record["number"]]


def test_an_operator_edit_moves_the_ticket_entry_to_its_latest_event(
    synced: Container, snow: FakeServiceNow
) -> None:
    incident_id = declare(synced, severity="SEV-2")
    drain(synced)
    (record,) = snow.by_correlation(incident_id)
    snow.edit(str(record["sys_id"]), short_description="Card payments failing")
    assert synced.sync is not None
    synced.sync.poll(SN)
    found = board(synced, incident_id, Persona.RESPONDER)
    # One entry per ticket, showing the latest sync event: the edit, not the link.
    assert ticket_keys(found) == [record["number"]]
    (entry,) = found["tickets"]
    assert entry["data"]["applied"] == {"title": "Card payments failing"}
    assert found["title"] == "Card payments failing"


def test_rebuilt_boards_show_the_same_tickets(synced: Container, snow: FakeServiceNow) -> None:
    incident_id = declare(synced, severity="SEV-1")
    drain(synced)
    live = board(synced, incident_id, Persona.RESPONDER)["tickets"]
    synced.incidents.rebuild()
    assert board(synced, incident_id, Persona.RESPONDER)["tickets"] == live


def test_a_link_whose_recording_failed_is_recorded_by_the_next_delivery_once(
    synced: Container, snow: FakeServiceNow, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = synced.sync
    assert engine is not None
    incident_id = declare(synced, severity="SEV-1")
    submit = engine.incidents.submit
    failed: list[str] = []

    def failing_once(command: Any) -> Any:
        linked = isinstance(command, ApplyExternal) and command.event_id.endswith(":linked")
        if linked and not failed:
            failed.append(command.event_id)
            raise RuntimeError("the timeline could not be written")
        return submit(command)

    monkeypatch.setattr(engine.incidents, "submit", failing_once)
    with pytest.raises(RuntimeError):  # the ticket is made and linked, its record fails
        engine.deliver(SN, incident_id, fields=True)
    (record,) = snow.by_correlation(incident_id)
    assert ticket_keys(board(synced, incident_id, Persona.RESPONDER)) == []
    engine.deliver(SN, incident_id, fields=True)  # the relay's retry
    engine.deliver(SN, incident_id, fields=True)
    drain(synced)
    assert ticket_keys(board(synced, incident_id, Persona.RESPONDER)) == [record["number"]]
    linked = [
        r.event_id
        for r in synced.reader.in_position_order(10**12)
        if r.incident_id == incident_id and r.event_id.endswith(":linked")
    ]
    assert linked == failed
    assert len(snow.by_correlation(incident_id)) == 1
