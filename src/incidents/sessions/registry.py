"""The registry of open stream connections (SSE and WebSocket), and its in-process form.

Each server process records the streams it serves: who, what they follow, since when,
and the last position sent. With IM_REDIS_URL the records live in Redis
(:mod:`incidents.store.redis_sessions`), so any process can list every connection of
every process; each record expires unless its connection refreshes it, so a process
that dies leaves nothing behind for long.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

# This process, as connection records name it.
INSTANCE = f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class StreamConnection:
    """One open stream."""

    connection_id: str
    kind: str  # "sse" or "websocket"
    subject: str
    incident_id: str | None
    types: tuple[str, ...]
    opened_us: int
    instance: str = INSTANCE
    last_position: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["types"] = list(self.types)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StreamConnection:
        return cls(**{**raw, "types": tuple(raw.get("types") or ())})


def new_connection(
    kind: str, subject: str, incident_id: str | None, types: tuple[str, ...]
) -> StreamConnection:
    """A record for a stream opening now."""
    return StreamConnection(
        uuid.uuid4().hex, kind, subject, incident_id, types, int(time.time() * 1_000_000)
    )


class ConnectionRegistry(Protocol):
    """Where open connections are recorded."""

    async def opened(self, connection: StreamConnection, ttl: float) -> None: ...

    async def touched(self, connection: StreamConnection, ttl: float) -> None:
        """Refresh the record (and its last position) before it expires."""
        ...

    async def closed(self, connection_id: str) -> None: ...

    async def connections(self) -> list[StreamConnection]:
        """Every connection recorded and not expired."""
        ...

    async def close(self) -> None: ...


class InProcessRegistry:
    """This process's connections, in memory."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[StreamConnection, float]] = {}
        self._lock = threading.Lock()

    async def opened(self, connection: StreamConnection, ttl: float) -> None:
        with self._lock:
            self._records[connection.connection_id] = (connection, time.monotonic() + ttl)

    async def touched(self, connection: StreamConnection, ttl: float) -> None:
        await self.opened(connection, ttl)

    async def closed(self, connection_id: str) -> None:
        with self._lock:
            self._records.pop(connection_id, None)

    async def connections(self) -> list[StreamConnection]:
        now = time.monotonic()
        with self._lock:
            for key in [k for k, (_, expires) in self._records.items() if expires <= now]:
                del self._records[key]
            return sorted((c for c, _ in self._records.values()), key=lambda c: c.opened_us)

    async def close(self) -> None:
        return None


def advanced(connection: StreamConnection, position: int) -> StreamConnection:
    """The record with a later last position."""
    return replace(connection, last_position=max(connection.last_position, position))
