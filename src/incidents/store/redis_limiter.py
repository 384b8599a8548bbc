"""The sliding-window rate limiter in Redis, shared by every server process.

One sorted set per key holds the request times of the last window. A Lua script
trims, counts and adds atomically, on the Redis server's clock (TIME), so processes
on different hosts agree. If Redis cannot be reached the request is let through and
the failure logged: a limiter outage must not take the API down with it.
"""

from __future__ import annotations

import logging
import uuid

from redis.exceptions import RedisError

from incidents.ratelimit.limiter import Verdict
from incidents.store.redis_client import PerLoopRedis

log = logging.getLogger("incidents.ratelimit")

_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
    return {1, limit - count - 1, '0'}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, 0, tostring(tonumber(oldest[2]) + window - now)}
"""


class RedisLimiter:
    """:class:`incidents.ratelimit.limiter.RateLimiter` on Redis."""

    def __init__(self, url: str, prefix: str = "incidents:ratelimit:") -> None:
        self._redis = PerLoopRedis(url)
        self._prefix = prefix

    async def hit(self, key: str, limit: int, window: float) -> Verdict:
        member = uuid.uuid4().hex
        try:
            allowed, remaining, retry = await self._redis.client().eval(
                _SLIDING_WINDOW, 1, self._prefix + key, window, limit, member
            )
        except (RedisError, OSError) as exc:
            log.warning("rate limiter unavailable, request let through: %s", exc)
            return Verdict(True, limit, limit)
        return Verdict(bool(allowed), limit, int(remaining), float(retry))

    async def close(self) -> None:
        await self._redis.close()
