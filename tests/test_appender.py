"""The group-commit writer keeps serving when a caller gives up on its request."""

from __future__ import annotations

from incidents.app import Container
from incidents.events.envelope import normalize
from incidents.timeline.append import Outcome, PendingEvent
from tests.conftest import event


def test_a_cancelled_request_is_committed_and_the_writer_goes_on(container: Container) -> None:
    futures = [
        container.appender.submit([PendingEvent(normalize(event(n)), "alice@example.com")])
        for n in range(20)
    ]
    # A client that disconnects cancels its future while it waits in the queue.
    cancelled = [f for f in futures[::2] if f.cancel()]
    later = container.appender.submit([PendingEvent(normalize(event(99)), "alice@example.com")])
    assert later.result(timeout=30)[0].event_id == "evt-99"
    for future in futures:
        if future not in cancelled:
            assert future.result(timeout=30)[0].outcome is Outcome.CREATED
    # Cancelled or not, every event was stored exactly once.
    assert container.reader.head_position() == 21
