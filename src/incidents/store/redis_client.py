"""One asyncio Redis client per event loop.

An asyncio connection belongs to the loop that opened it; a server has one loop, but
tests and the CLI may run several over a process's life.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis


class PerLoopRedis:
    """Hands out the client of the running loop, opening it on first use."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._clients: dict[asyncio.AbstractEventLoop, Any] = {}

    def client(self) -> Any:
        loop = asyncio.get_running_loop()
        found = self._clients.get(loop)
        if found is None:
            found = aioredis.from_url(self._url, socket_timeout=2, socket_connect_timeout=2)
            self._clients[loop] = found
        return found

    async def close(self) -> None:
        """Close the running loop's client."""
        found = self._clients.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found.aclose()
