"""An alert storm: thousands of Alertmanager alerts sharing a few fingerprints, at once.

Deliveries race from many threads into two servers sharing one database (each with
its own writer), and every notification is sent twice, as an HA pair of Alertmanagers
would. The storm must end with exactly one incident per fingerprint and every alert
accounted for: one row, one trigger event, one attachment each.
"""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from incidents.app import build_container, create_app
from incidents.store.schema import alerts, incidents, timeline_events
from tests.conftest import make_settings

TOKEN = "am-storm-token-0123456789abcdef"
INTEGRATIONS = {"alertmanager": [{"name": "storm", "token": TOKEN}]}
FINGERPRINTS = 5
ALERTS = 3000
PER_DELIVERY = 10
THREADS = 16


def _delivery(batch: list[int]) -> dict[str, Any]:
    entries = []
    for n in batch:
        group = n % FINGERPRINTS
        entries.append(
            {
                "status": "firing",
                "labels": {
                    "alertname": "StormErrors",
                    "service": f"svc-{group}",
                    "error_type": f"E{group}",
                    "instance": f"host-{n}:9100",
                    "severity": "critical",
                },
                "annotations": {"summary": f"errors on host-{n}"},
                # All within one minute: well inside every correlation window, so the
                # order of arrival cannot end a grouping.
                "startsAt": f"2025-12-11T10:30:{n % 60:02d}.{n // 60:03d}Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example.org:9090/graph",
                "fingerprint": f"{n:016x}",
            }
        )
    return {
        "version": "4",
        "groupKey": '{}:{alertname="StormErrors"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "incidents",
        "groupLabels": {"alertname": "StormErrors"},
        "commonLabels": {"alertname": "StormErrors", "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.org:9093",
        "alerts": entries,
    }


def test_storm_ends_with_one_incident_per_fingerprint(database_url: str) -> None:
    numbers = list(range(ALERTS))
    random.Random(7).shuffle(numbers)
    deliveries = [_delivery(numbers[i : i + PER_DELIVERY]) for i in range(0, ALERTS, PER_DELIVERY)]
    # Both members of the HA pair send every notification.
    sends = deliveries + deliveries
    random.Random(11).shuffle(sends)

    with ExitStack() as stack:
        containers = [
            build_container(make_settings(database_url, integrations=INTEGRATIONS))
            for _ in range(2)
        ]
        clients = [stack.enter_context(TestClient(create_app(c))) for c in containers]

        def post(index: int) -> list[dict[str, Any]]:
            r = clients[index % 2].post(
                "/api/v1/ingest/alertmanager",
                json=sends[index],
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert r.status_code == 200, r.text
            outcomes: list[dict[str, Any]] = r.json()["alerts"]
            return outcomes

        with ThreadPoolExecutor(THREADS) as pool:
            results = [o for batch in pool.map(post, range(len(sends))) for o in batch]

        engine = containers[0].engine
        with engine.connect() as conn:
            incident_rows = conn.execute(select(incidents.c.incident_id, incidents.c.state)).all()
            alert_rows = conn.execute(select(alerts.c.alert_key, alerts.c.incident_id)).all()
            triggers = conn.execute(
                select(func.count())
                .select_from(timeline_events)
                .where(timeline_events.c.type == "im.alert.trigger")
            ).scalar_one()

    outcomes = Counter(o["outcome"] for o in results)
    assert outcomes == {"created": ALERTS, "duplicate": ALERTS}
    decisions = Counter(o["decision"] for o in results if o["outcome"] == "created")
    assert decisions["opened"] == FINGERPRINTS
    assert decisions["attached"] == ALERTS - FINGERPRINTS

    assert len(incident_rows) == FINGERPRINTS
    assert triggers == ALERTS
    assert len(alert_rows) == ALERTS
    # Every alert sits on the one incident of its fingerprint, and each incident counts
    # exactly its own alerts.
    by_incident = Counter(incident for _, incident in alert_rows)
    assert set(by_incident) == {row.incident_id for row in incident_rows}
    assert sorted(by_incident.values()) == [ALERTS // FINGERPRINTS] * FINGERPRINTS
    groups: dict[str, set[str]] = {}
    for key, incident in alert_rows:
        n = int(key.rsplit("/", 1)[1], 16)
        groups.setdefault(incident, set()).add(f"svc-{n % FINGERPRINTS}")
    assert all(len(services) == 1 for services in groups.values())
    for container in containers:
        for row in incident_rows:
            incident = container.incidents.get(row.incident_id, None)
            assert incident is not None
            assert incident.alert_count == ALERTS // FINGERPRINTS
            assert incident.firing_alerts == ALERTS // FINGERPRINTS
