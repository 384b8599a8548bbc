"""The in-process bus (the default): published events go straight to local listeners."""

from __future__ import annotations

from collections.abc import Sequence

from incidents.bus.listeners import Listeners
from incidents.bus.message import BusMessage, Listener, Subscription


class InProcessBus:
    """A :class:`~incidents.bus.message.Bus` within one process; nothing to set up.

    Other processes (``--workers N``, other servers) do not see these events: use the
    NATS adapter (``IM_NATS_URL``) when more than one process serves.
    """

    def __init__(self) -> None:
        self._listeners = Listeners()

    def start(self) -> None:
        """Nothing to connect to."""

    def close(self) -> None:
        """Nothing to release."""

    def publish(self, message: BusMessage) -> None:
        self._listeners.dispatch(message)

    def publish_many(self, messages: Sequence[BusMessage]) -> list[Exception | None]:
        for message in messages:
            self._listeners.dispatch(message)
        return [None] * len(messages)

    def subscribe(self, listener: Listener) -> Subscription:
        return self._listeners.add(listener)
