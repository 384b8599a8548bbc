"""Property tests: keyset pagination under concurrent appends, and idempotent appends."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Api, event

# One database per test; each example works in an incident of its own.
_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_TIMES = [f"2025-12-11T10:{m:02d}:00Z" for m in range(4)]
_TYPES = ["im.note.add", "im.alert.trigger", "im.incident.acknowledge"]

_event_specs = st.lists(
    st.tuples(st.sampled_from(_TIMES), st.sampled_from(_TYPES)), min_size=0, max_size=30
)


def _make(incident: str, specs: list[tuple[str, str]], tag: str) -> list[dict[str, Any]]:
    return [
        event(f"{incident}-{tag}-{i}", incident=incident, time=t, type_=ty)
        for i, (t, ty) in enumerate(specs)
    ]


@_SETTINGS
@given(
    initial=_event_specs,
    during=st.lists(_event_specs, max_size=5),
    limit=st.integers(min_value=1, max_value=7),
    descending=st.booleans(),
    type_filter=st.sampled_from([None, "im.note.*", "im.alert.*,im.incident.*"]),
)
def test_walking_pages_yields_every_event_once_in_order_while_appends_continue(
    api: Api,
    initial: list[tuple[str, str]],
    during: list[list[tuple[str, str]]],
    limit: int,
    descending: bool,
    type_filter: str | None,
) -> None:
    incident = f"INC-{uuid.uuid4().hex[:10]}"
    seed = [
        *_make(incident, initial, "a"),
        event(f"{incident}-anchor", incident=incident, time=_TIMES[0]),
    ]
    assert api.post_batch(seed).status_code == 200

    params: dict[str, Any] = {"limit": limit, "order": "desc" if descending else "asc"}
    if type_filter:
        params["type"] = type_filter
    patterns = [p.rstrip("*") for p in type_filter.split(",")] if type_filter else None

    def matches(evt: dict[str, Any]) -> bool:
        return patterns is None or any(evt["type"].startswith(p) for p in patterns)

    expected_at_start = {e["id"] for e in seed if matches(e)}
    seen: list[dict[str, Any]] = []
    cursor = None
    extra_batches = iter(during)
    for round_ in range(10_000):
        query = dict(params)
        if cursor:
            query["cursor"] = cursor
        resp = api.get(f"/api/v1/incidents/{incident}/timeline", **query)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        seen.extend(body["events"])
        # Appends land between page requests, at times before and after the cursor.
        batch = next(extra_batches, None)
        if batch:
            api.post_batch(_make(incident, batch, f"d{round_}"))
        cursor = body.get("next_cursor")
        if not cursor:
            break

    ids = [e["id"] for e in seen]
    assert len(ids) == len(set(ids)), "an event was yielded twice"
    assert expected_at_start <= set(ids), "an event stored before the walk was missed"
    keys = [(e["event_time"], e["position"]) for e in seen]
    assert keys == sorted(keys, reverse=descending)
    assert all(
        patterns is None or any(e["event_type"].startswith(p) for p in patterns) for e in seen
    )


_variants = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=4),  # which logical event
        st.sampled_from(["same", "dotted", "changed", "new-id-same-origin"]),
    ),
    min_size=1,
    max_size=25,
)


@_SETTINGS
@given(plan=_variants, use_origin=st.booleans(), as_batch=st.booleans())
def test_appends_are_idempotent(
    api: Api, plan: list[tuple[int, str]], use_origin: bool, as_batch: bool
) -> None:
    incident = f"INC-{uuid.uuid4().hex[:10]}"

    def build(n: int, variant: str) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if use_origin:
            attrs["imoriginid" if variant != "dotted" else "im__origin_id"] = (
                f"{incident}-origin-{n}"
            )
        if variant == "dotted":
            attrs["im__actor"] = "oncall"
        else:
            attrs["imactor"] = "oncall"
        evt_id = f"{incident}-{n}"
        if variant == "new-id-same-origin":
            evt_id += "-redelivered"
        data = {"note": f"note {n}", "changed": variant == "changed"}
        return event(evt_id, incident=incident, data=data, **attrs)

    sent = [build(n, variant) for n, variant in plan]
    if as_batch:
        results = api.post_batch(sent).json()["results"]
        statuses = [r["status"] for r in results]
        ids = [r["event_id"] for r in results]
    else:
        responses = [api.post_event(e) for e in sent]
        statuses = [r.status_code for r in responses]
        ids = [r.json().get("event_id") for r in responses]

    # Model: the first event under a key is stored; a later one is a replay when its
    # content is the same, a conflict otherwise.
    first: dict[str, tuple[str, bool, str]] = {}
    expected: list[int] = []
    for (n, variant), status in zip(plan, statuses, strict=True):
        key = (
            f"origin-{n}"
            if use_origin
            else f"{incident}-{n}" + ("-redelivered" if variant == "new-id-same-origin" else "")
        )
        changed = variant == "changed"
        if key not in first:
            first[key] = (key, changed, variant)
            expected.append(201)
        else:
            expected.append(200 if first[key][1] == changed else 409)
        assert status in (200, 201, 409)
    assert statuses == expected
    stored = api.get(f"/api/v1/incidents/{incident}/timeline", limit=1000).json()["events"]
    assert len(stored) == len(first)
    # Every answer about a key names the event stored first under it.
    first_ids: dict[str, str] = {}
    for (n, variant), evt_id in zip(plan, ids, strict=True):
        key = f"origin-{n}" if use_origin else f"{n}-{variant == 'new-id-same-origin'}"
        first_ids.setdefault(key, evt_id)
        assert evt_id == first_ids[key]
    assert api.get(f"/api/v1/incidents/{incident}/timeline/verify").json()["intact"] is True
