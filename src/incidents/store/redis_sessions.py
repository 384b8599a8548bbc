"""Stream connection records in Redis, shared by every server process.

One key per connection (``<prefix><id>``, JSON, with an expiry its connection keeps
pushing forward). Listing scans the prefix: meant for operators, not the hot path.
Redis errors are logged and swallowed: a registry outage must not end streams.
"""

from __future__ import annotations

import logging

import orjson
from redis.exceptions import RedisError

from incidents.sessions.registry import StreamConnection
from incidents.store.redis_client import PerLoopRedis

log = logging.getLogger("incidents.sessions")


class RedisRegistry:
    """:class:`incidents.sessions.registry.ConnectionRegistry` on Redis."""

    def __init__(self, url: str, prefix: str = "incidents:streams:") -> None:
        self._redis = PerLoopRedis(url)
        self._prefix = prefix

    async def opened(self, connection: StreamConnection, ttl: float) -> None:
        try:
            await self._redis.client().set(
                self._prefix + connection.connection_id,
                orjson.dumps(connection.as_dict()),
                px=max(1, int(ttl * 1000)),
            )
        except (RedisError, OSError) as exc:
            log.warning("connection registry unavailable: %s", exc)

    async def touched(self, connection: StreamConnection, ttl: float) -> None:
        await self.opened(connection, ttl)

    async def closed(self, connection_id: str) -> None:
        try:
            await self._redis.client().delete(self._prefix + connection_id)
        except (RedisError, OSError) as exc:
            log.warning("connection registry unavailable: %s", exc)

    async def connections(self) -> list[StreamConnection]:
        client = self._redis.client()
        keys = [key async for key in client.scan_iter(match=self._prefix + "*", count=500)]
        if not keys:
            return []
        values = await client.mget(keys)
        found = [StreamConnection.from_dict(orjson.loads(v)) for v in values if v is not None]
        return sorted(found, key=lambda c: c.opened_us)

    async def close(self) -> None:
        await self._redis.close()
