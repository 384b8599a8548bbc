"""The correlation engine through the real appender: in memory, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from incidents.app import Container, build_container
from incidents.events.envelope import EncodedObject
from incidents.incident.aggregate import Incident
from incidents.incident.correlation.alert import RESOLVE, TRIGGER, Alert
from incidents.incident.correlation.engine import AlertOutcome, IngestAlerts
from incidents.incident.correlation.fingerprint import FINGERPRINT_VERSION, fingerprint
from incidents.incident.correlation.records import AlertRecord
from incidents.incident.correlation.rules import CorrelationRules, parse_rules
from incidents.incident.projection import ProjectionSession
from incidents.log.commands import Command
from incidents.log.records import StoredEvent
from incidents.store.memory_writer import MemoryWriter
from incidents.store.schema import alerts as alerts_table
from incidents.timeline.group_commit import GroupCommitAppender
from tests.conftest import make_settings

T0 = 1_765_447_200_000_000  # 2025-12-11T10:00:00Z
MINUTE = 60_000_000


class Harness:
    """Runs commands through a GroupCommitAppender and reads back events and projections."""

    def __init__(self, container: Container | None) -> None:
        self.container = container
        self.memory: MemoryWriter | None = None
        if container is None:
            self.memory = MemoryWriter()
            self.appender = GroupCommitAppender(self.memory, projection=ProjectionSession)
            self.appender.start()
        else:
            self.appender = container.appender

    def close(self) -> None:
        if self.container is None:
            self.appender.stop()
        else:
            self.container.close()

    def run(self, command: Command) -> Any:
        return self.appender.submit_command(command).result()

    def ingest(self, rules: CorrelationRules, *alerts: Alert) -> list[AlertOutcome]:
        outcomes: list[AlertOutcome] = []
        for alert in alerts:
            outcomes.extend(self.run(IngestAlerts((alert,), rules, "integration:test")))
        return outcomes

    def events(self) -> list[StoredEvent]:
        if self.memory is not None:
            return list(self.memory.events)
        assert self.container is not None
        reader = self.container.reader
        return list(reader.in_position_order(reader.head_position()))

    def incident(self, incident_id: str) -> Incident:
        if self.memory is not None:
            row = self.memory.projection_tables.tables["incidents"][(incident_id,)]
            return Incident.from_json(row[-1])
        assert self.container is not None
        found = self.container.incidents.reader.get(incident_id)
        assert found is not None
        return found

    def alert(self, key: str) -> AlertRecord:
        if self.memory is not None:
            return AlertRecord.from_row(self.memory.projection_tables.tables["alerts"][(key,)])
        assert self.container is not None
        with self.container.engine.connect() as conn:
            row = conn.execute(alerts_table.select().where(alerts_table.c.alert_key == key)).one()
        return AlertRecord.from_row(tuple(row))


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def harness(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Harness]:
    if request.param == "memory":
        h = Harness(None)
    else:
        url = (
            f"sqlite:///{tmp_path / 'incidents.db'}"
            if request.param == "sqlite"
            else request.getfixturevalue("postgres_url")
        )
        container = build_container(make_settings(url))
        container.start()
        h = Harness(container)
    try:
        yield h
    finally:
        h.close()


def alert(
    key: str,
    minute: float = 0,
    *,
    event_type: str = TRIGGER,
    severity: str = "critical",
    provider: str = "alertmanager",
    **fields: str,
) -> Alert:
    """An alert series ``key`` notifying at ``minute`` after T0, with fingerprint fields."""
    time_us = T0 + int(minute * MINUTE)
    notification = f"{provider}:{key}:{event_type}:{time_us}"
    return Alert(
        provider=provider,
        key=f"{provider}:{key}",
        event_type=event_type,
        time_us=time_us,
        event_id=notification,
        origin_id=notification,
        source=f"{provider}://test",
        name=f"alert {key}",
        severity=severity,
        summary=f"summary of {key}",
        attributes=dict(fields),
    )


def rules(**section: Any) -> CorrelationRules:
    base: dict[str, Any] = {"fingerprints": ["service + error_type + time_window"]}
    base.update(section)
    return parse_rules(base)


def correlation_of(h: Harness, event_id: str) -> dict[str, Any]:
    row = next(e for e in h.events() if e.event_id == event_id)
    data: dict[str, Any] = orjson.loads(row.body)["data"]["correlation"]
    return data


def types_on(h: Harness, incident_id: str) -> list[str]:
    return [e.type for e in h.events() if e.incident_id == incident_id]


# --- fingerprints -----------------------------------------------------------------


def test_values_cannot_run_together() -> None:
    assert fingerprint([("f", "ab"), ("g", "c")]) != fingerprint([("f", "a"), ("g", "bc")])
    assert fingerprint([("ab", "c")]) != fingerprint([("a", "bc")])
    assert fingerprint([("f", "a|b")]) != fingerprint([("f", "a"), ("|b", "")])


def test_field_names_are_part_of_the_fingerprint() -> None:
    assert fingerprint([("service", "api")]) != fingerprint([("host", "api")])


def test_fingerprint_is_versioned() -> None:
    value = fingerprint([("service", "api")])
    assert value.startswith(f"{FINGERPRINT_VERSION}:")
    assert value == fingerprint([("service", "api")])


_pairs = st.lists(st.tuples(st.text(max_size=6), st.text(max_size=6)), max_size=4)


@given(_pairs, _pairs)
def test_fingerprints_are_equal_exactly_when_the_fields_are(
    a: list[tuple[str, str]], b: list[tuple[str, str]]
) -> None:
    assert (fingerprint(a) == fingerprint(b)) == (a == b)


# --- grouping -----------------------------------------------------------------------


def test_alert_missing_a_rule_field_does_not_share_an_empty_bucket(harness: Harness) -> None:
    ruleset = rules()
    first, second = harness.ingest(
        ruleset, alert("a", 0, service="api"), alert("b", 1, service="api")
    )
    # Both lack error_type: neither groups with the other, each opens its own incident.
    assert first.decision == second.decision == "opened"
    assert first.incident_id != second.incident_id
    assert first.rule is None
    recorded = correlation_of(harness, first.event_id)
    assert recorded["skipped_rules"] == [{"rule": "service+error_type", "missing": ["error_type"]}]
    assert recorded["groups"] == []


def test_alert_attaches_within_the_absorb_window_and_explains_why(harness: Harness) -> None:
    ruleset = rules()
    opened, attached = harness.ingest(
        ruleset,
        alert("a", 0, service="api", error_type="5xx"),
        alert("b", 10, service="api", error_type="5xx"),
    )
    assert opened.decision == "opened"
    assert attached.decision == "attached"
    assert attached.incident_id == opened.incident_id
    assert opened.incident_id is not None
    recorded = correlation_of(harness, attached.event_id)
    assert recorded["decision"] == "attached"
    assert recorded["rule"] == "service+error_type"
    assert recorded["fields"] == {"service": "api", "error_type": "5xx"}
    assert recorded["fingerprint"] == fingerprint([("service", "api"), ("error_type", "5xx")])
    # The attach is on the incident's own timeline.
    assert types_on(harness, opened.incident_id).count("im.alert.trigger") == 2
    assert harness.incident(opened.incident_id).alert_count == 2
    assert harness.alert("alertmanager:b").rule == "service+error_type"


def test_new_incident_after_the_absorb_window(harness: Harness) -> None:
    ruleset = rules(windows={"absorb": "1h", "quiet": "2h", "max_lifetime": "24h"})
    outcomes = harness.ingest(
        ruleset,
        alert("a", 0, service="api", error_type="5xx"),
        alert("b", 50, service="api", error_type="5xx"),
        alert("c", 100, service="api", error_type="5xx"),
    )
    assert [o.decision for o in outcomes] == ["opened", "attached", "opened"]
    assert outcomes[2].incident_id != outcomes[0].incident_id


def test_new_incident_after_the_quiet_period(harness: Harness) -> None:
    ruleset = rules(windows={"absorb": "4h", "quiet": "10m"})
    outcomes = harness.ingest(
        ruleset,
        alert("a", 0, service="api", error_type="5xx"),
        alert("b", 9, service="api", error_type="5xx"),
        alert("c", 30, service="api", error_type="5xx"),
    )
    assert [o.decision for o in outcomes] == ["opened", "attached", "opened"]
    assert outcomes[2].incident_id != outcomes[0].incident_id


def test_new_incident_after_the_maximum_lifetime(harness: Harness) -> None:
    # Absorb longer than the lifetime, quiet never reached: only the lifetime ends it.
    ruleset = rules(windows={"absorb": "2d", "quiet": "2h", "max_lifetime": "3h"})
    outcomes = harness.ingest(
        ruleset, *(alert(f"a{h}", 60 * h, service="api", error_type="5xx") for h in range(5))
    )
    assert [o.decision for o in outcomes] == [
        "opened",
        "attached",
        "attached",
        "attached",
        "opened",
    ]
    assert outcomes[4].incident_id != outcomes[0].incident_id


def test_severity_mapping_decides_between_opening_and_waiting(harness: Harness) -> None:
    ruleset = rules(open_incident_at="SEV-2", severity={"page-me": "SEV-1"})
    waits, opens, mapped = harness.ingest(
        ruleset,
        alert("w", 0, severity="warning", service="db", error_type="slow"),
        alert("c", 1, severity="critical", service="api", error_type="5xx"),
        alert("p", 2, severity="page-me", service="queue", error_type="lag"),
    )
    assert waits.decision == "unattached"
    assert waits.incident_id is None
    assert harness.alert("alertmanager:w").incident_id is None
    assert harness.alert("alertmanager:w").status == "firing"
    assert correlation_of(harness, waits.event_id)["severity"] == "SEV-3"
    assert opens.decision == "opened"
    assert mapped.decision == "opened"
    assert opens.incident_id is not None and mapped.incident_id is not None
    assert harness.incident(opens.incident_id).severity == "SEV-1"
    # A less severe alert still attaches to an incident its fingerprint matches.
    (late,) = harness.ingest(
        ruleset, alert("w2", 3, severity="info", service="api", error_type="5xx")
    )
    assert late.decision == "attached"
    assert late.incident_id == opens.incident_id


@pytest.mark.parametrize("auto_mitigate", [True, False])
def test_all_alerts_resolved_is_recorded_and_may_mitigate(
    harness: Harness, auto_mitigate: bool
) -> None:
    ruleset = parse_rules(
        {"fingerprints": [{"name": "svc", "fields": ["service"], "auto_mitigate": auto_mitigate}]}
    )
    first, _ = harness.ingest(ruleset, alert("a", 0, service="api"), alert("b", 1, service="api"))
    incident_id = first.incident_id
    assert incident_id is not None
    harness.ingest(ruleset, alert("a", 5, event_type=RESOLVE, service="api"))
    assert "im.incident.alerts_resolved" not in types_on(harness, incident_id)
    assert harness.incident(incident_id).firing_alerts == 1
    harness.ingest(ruleset, alert("b", 6, event_type=RESOLVE, service="api"))
    types = types_on(harness, incident_id)
    assert types.count("im.incident.alerts_resolved") == 1
    incident = harness.incident(incident_id)
    assert incident.firing_alerts == 0
    assert incident.alert_count == 2
    assert harness.alert("alertmanager:b").status == "resolved"
    assert incident.status == ("mitigated" if auto_mitigate else "open")


def test_same_fingerprint_from_two_providers_is_one_incident(harness: Harness) -> None:
    ruleset = rules()
    paged, scraped = harness.ingest(
        ruleset,
        alert("P1", 0, provider="pagerduty", service="api", error_type="5xx"),
        alert("am1", 2, provider="alertmanager", service="api", error_type="5xx"),
    )
    assert paged.decision == "opened"
    assert scraped.decision == "attached"
    assert scraped.incident_id == paged.incident_id
    assert paged.incident_id is not None
    assert harness.incident(paged.incident_id).alert_count == 2


def test_incidents_opened_by_two_providers_are_linked_as_duplicates(harness: Harness) -> None:
    ruleset = rules(
        fingerprints=["service + error_type + time_window", "alert_rule + host + time_window"]
    )
    paged, scraped, both = harness.ingest(
        ruleset,
        # PagerDuty knows the service; Alertmanager knows the rule and the host.
        alert("P1", 0, provider="pagerduty", service="api", error_type="5xx"),
        alert("am1", 1, provider="alertmanager", alert_rule="HighErrors", host="web-1"),
        # One alert carrying both reveals they are the same failure.
        alert("am2", 2, service="api", error_type="5xx", alert_rule="HighErrors", host="web-1"),
    )
    assert paged.decision == scraped.decision == "opened"
    assert paged.incident_id is not None and scraped.incident_id is not None
    assert paged.incident_id != scraped.incident_id
    assert both.decision == "attached"
    assert both.incident_id == paged.incident_id
    assert correlation_of(harness, both.event_id)["also_matched"] == [scraped.incident_id]
    assert scraped.incident_id in harness.incident(paged.incident_id).related
    assert paged.incident_id in harness.incident(scraped.incident_id).related
    links = [
        orjson.loads(e.body)["data"]
        for e in harness.events()
        if e.type == "im.incident.link" and e.incident_id == scraped.incident_id
    ]
    assert links[0]["relation"] == "possible-duplicate"
    assert links[0]["rule"] == "service+error_type"
    assert links[0]["fields"] == {"service": "api", "error_type": "5xx"}


def test_redelivered_alert_is_a_duplicate(harness: Harness) -> None:
    ruleset = rules()
    sent = alert("a", 0, service="api", error_type="5xx")
    first, again = harness.ingest(ruleset, sent, sent)
    assert first.outcome == "created"
    assert again.outcome == "duplicate"
    assert again.incident_id == first.incident_id
    assert sum(1 for e in harness.events() if e.event_id == sent.event_id) == 1


def test_alert_stored_by_another_writer_after_the_early_lookup_is_a_duplicate(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On PostgreSQL a delivery's dedupe keys are looked up before the log lock. Another
    # server may store one of them in between: the unique index refuses the second
    # copy, and the group runs again with the lookup under the lock.
    from incidents.store import postgres_writer

    container = build_container(make_settings(postgres_url))
    container.start()
    h = Harness(container)
    try:
        ruleset = rules()
        sent = alert("raced", 0, service="api", error_type="5xx")
        (first,) = h.ingest(ruleset, sent)
        assert first.outcome == "created"
        real = postgres_writer.PostgresTransaction.existing
        calls: list[int] = []

        def stale_once(self: Any, keys: Any) -> Any:
            # The first lookup misses what is stored, as if it ran just before the
            # other server's commit.
            calls.append(len(keys))
            return {} if len(calls) == 1 else real(self, keys)

        monkeypatch.setattr(postgres_writer.PostgresTransaction, "existing", stale_once)
        (again,) = h.ingest(ruleset, sent)
        assert len(calls) >= 2
        assert again.outcome == "duplicate"
        assert again.incident_id == first.incident_id
        assert sum(1 for e in h.events() if e.event_id == sent.event_id) == 1
        assert h.alert(sent.key).events == 1
    finally:
        h.close()


@given(
    incident_id=st.none() | st.from_regex(r"INC-[1-9][0-9]{0,4}", fullmatch=True),
    visibility=st.sampled_from([None, "public", "restricted", "confidential"]),
    fingerprint_value=st.none() | st.text("0123456789abcdef", min_size=1, max_size=8),
    correlation=st.dictionaries(
        st.text(max_size=8),
        st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
        max_size=4,
    ),
    labels=st.dictionaries(st.text(min_size=1, max_size=6), st.text(max_size=6), max_size=3),
    event_type=st.sampled_from([TRIGGER, RESOLVE]),
)
def test_placed_alert_event_is_what_validation_would_build(
    incident_id: str | None,
    visibility: str | None,
    fingerprint_value: str | None,
    correlation: dict[str, Any],
    labels: dict[str, str],
    event_type: str,
) -> None:
    # The writer places an alert's event validated beforehand instead of validating
    # it again under the log lock: the result must be the event validation builds.
    from incidents.events.envelope import placed
    from incidents.events.timeformat import format_micros
    from incidents.incident.commands import build_event
    from incidents.incident.correlation.engine import _template, alert_document

    sent = Alert(
        provider="alertmanager",
        key="alertmanager:k",
        event_type=event_type,
        time_us=T0 + 123_456,
        event_id="alertmanager:k:1",
        origin_id="alertmanager:k:1",
        source="alertmanager://test",
        name="HighErrorRate",
        labels=labels,
    )
    template = _template(sent, "integration:test")
    # The document is encoded once, up front, and spliced in when the event is placed.
    assert isinstance(template.data["alert"], EncodedObject)
    fast = placed(
        template,
        incident_id,
        visibility=visibility,
        fingerprint=fingerprint_value,
        data={**template.data, "correlation": correlation},
    )
    validated = build_event(
        event_type,
        incident_id,
        {"alert": alert_document(sent), "correlation": correlation},
        "integration:test",
        event_id=sent.event_id,
        origin_id=sent.origin_id,
        source=sent.source,
        visibility=visibility,
        time=format_micros(sent.time_us),
        extra={"imfingerprint": fingerprint_value} if fingerprint_value else None,
    )
    assert fast == validated
    assert fast.body_json == validated.body_json


_JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=6)
_JSON_DOCUMENTS = st.dictionaries(
    st.text(max_size=6),
    st.recursive(
        _JSON_SCALARS,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=8,
    ),
    max_size=6,
)


@given(
    document=_JSON_DOCUMENTS,
    summary=st.none() | st.text(max_size=8),
    incident_id=st.none() | st.just("INC-7"),
    events=st.integers(0, 10**6),
)
def test_alert_state_is_the_same_with_a_document_encoded_up_front(
    document: dict[str, Any], summary: str | None, incident_id: str | None, events: int
) -> None:
    # The writer splices an encoded document into the alert's state; a rebuild encodes
    # the plain document read back from the event. Both must store the same bytes.
    def record(alert: dict[str, Any]) -> AlertRecord:
        return AlertRecord(
            key="alertmanager:k",
            provider="alertmanager",
            status="firing",
            incident_id=incident_id,
            first_us=T0,
            last_us=T0 + 1,
            last_position=42,
            severity="critical",
            summary=summary,
            rule="by-service",
            events=events,
            alert=alert,
        )

    plain = record(dict(document))
    spliced = record(EncodedObject(document))
    assert spliced.to_row() == plain.to_row()
    assert AlertRecord.from_row(spliced.to_row()) == plain
