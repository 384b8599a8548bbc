"""Rate limits in the machine's real Redis: shared between limiters (processes), and
enforced by the API (429) and the webhooks (503 so that senders retry)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incidents.app import Container, build_container, create_app
from incidents.store.redis_limiter import RedisLimiter
from tests.conftest import grant_access, make_settings

AM_TOKEN = "am-token-0123456789abcdef"
INTEGRATIONS = {"alertmanager": [{"name": "prod", "tokens": [AM_TOKEN]}]}


def test_two_limiters_share_one_sliding_window(redis_url: str) -> None:
    prefix = f"test-{uuid.uuid4().hex}:"

    async def scenario() -> list[Any]:
        first, second = RedisLimiter(redis_url, prefix), RedisLimiter(redis_url, prefix)
        try:
            verdicts = [await (first if i % 2 else second).hit("k", 3, 2.0) for i in range(4)]
            await asyncio.sleep(2.1)
            verdicts.append(await first.hit("k", 3, 2.0))
            return verdicts
        finally:
            await first.close()
            await second.close()

    verdicts = asyncio.run(scenario())
    assert [v.allowed for v in verdicts] == [True, True, True, False, True]
    assert [v.remaining for v in verdicts[:3]] == [2, 1, 0]
    assert 0 < verdicts[3].retry_after <= 2.0


def test_an_unreachable_redis_lets_requests_through() -> None:
    async def scenario() -> bool:
        limiter = RedisLimiter("redis://127.0.0.1:1/0")
        try:
            return (await limiter.hit("k", 1, 60)).allowed
        finally:
            await limiter.close()

    assert asyncio.run(scenario())


@pytest.fixture
def limited(redis_url: str, tmp_path: Any) -> Iterator[tuple[TestClient, Container]]:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        redis_url=redis_url,
        rate_limit_token_per_minute=3,
        rate_limit_webhook_per_minute=2,
        integrations=INTEGRATIONS,
    )
    container = build_container(settings)
    # Keys of this test's own: nothing left from other runs within the window.
    container.rate_limiter = RedisLimiter(redis_url, f"test-{uuid.uuid4().hex}:")
    assert isinstance(container.rate_limiter, RedisLimiter)
    grant_access(container, "alice@example.com")
    with TestClient(create_app(container)) as client:
        yield client, container


def test_a_token_over_its_limit_gets_429_with_retry_after(
    limited: tuple[TestClient, Container],
) -> None:
    client, container = limited
    _, token = container.tokens.create("alice@example.com")
    _, other = container.tokens.create("alice@example.com")
    auth = {"Authorization": f"Bearer {token}"}
    assert all(client.get("/api/v1/incidents", headers=auth).status_code == 200 for _ in range(3))
    refused = client.get("/api/v1/incidents", headers=auth)
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["type"] == "urn:incidents:problem:rate-limited"
    # Another token has a window of its own.
    assert client.get("/api/v1/incidents", headers={"Authorization": f"Bearer {other}"}).is_success


def test_a_webhook_over_its_limit_is_told_to_retry(limited: tuple[TestClient, Container]) -> None:
    client, _container = limited
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "incidents",
        "groupKey": "{}:{}",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "HighLatency", "service": "checkout"},
                "annotations": {"summary": "p99 over 2s"},
                "startsAt": "2026-12-01T10:00:00Z",
                "fingerprint": "abc123",
            }
        ],
    }
    auth = {"Authorization": f"Bearer {AM_TOKEN}"}
    answers = [
        client.post("/api/v1/ingest/alertmanager", json=body, headers=auth) for _ in range(3)
    ]
    assert [a.status_code for a in answers[:2]] == [200, 200]
    limited_answer = answers[2]
    # 503, not 429: Alertmanager retries 5xx answers and would drop a 429.
    assert limited_answer.status_code == 503
    assert int(limited_answer.headers["retry-after"]) >= 1
    assert limited_answer.json()["type"] == "urn:incidents:problem:rate-limited"
