"""Which incident events reach an ITSM connector: the outbox filter and the delivery
sort event types the same way, so a row the outbox keeps is one delivery acts on."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from incidents.events.types import TITLES
from incidents.integrations.sync_destination import ConnectorDestination, takes
from incidents.store.outbox_store import OutboxRecord

CONNECTOR = "servicenow:prod"

EVENT_TYPES = st.one_of(
    st.sampled_from(sorted(TITLES)),
    st.sampled_from(["im.servicenow.sync", "im.jira.sync", "im.note.add", "im.alert.fire"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz._", min_size=1, max_size=30),
)


class Engine:
    """The part of the sync engine a destination uses, recording deliveries."""

    def __init__(self) -> None:
        self.delivered: list[dict[str, Any]] = []

    def bound(self, connector_id: str) -> Any:
        return SimpleNamespace(connector=SimpleNamespace(actor=f"connector:{connector_id}"))

    def deliver(self, connector_id: str, incident_id: str, **kw: Any) -> None:
        self.delivered.append(kw)


def row(event_type: str) -> OutboxRecord:
    event = {
        "id": "e-1",
        "type": event_type,
        "imactor": "alice@example.com",
        "data": {"connector": CONNECTOR, "push": ["title"], "text": "x"},
    }
    return OutboxRecord(1, 1, "INC-1", event_type, orjson.dumps(event), CONNECTOR, 0, "e-1")


@given(EVENT_TYPES)
def test_delivery_acts_on_exactly_the_events_the_outbox_takes(event_type: str) -> None:
    engine = Engine()
    destination = ConnectorDestination(engine, CONNECTOR)  # type: ignore[arg-type]
    assert destination.deliver([row(event_type)]) == [None]
    assert bool(engine.delivered) == takes(event_type, True)
    assert not takes(event_type, False)
