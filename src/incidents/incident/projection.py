"""The projection session: incident, alert and group state inside one append transaction.

Commands read the state they decide on from here, and every event the transaction
stores is folded in here before the next command runs, so commands gathered into one
group commit see each other's effects. :meth:`ProjectionSession.flush` writes what
changed in the same transaction as the events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from incidents.events.attributes import VISIBILITIES
from incidents.events.envelope import Event
from incidents.incident.aggregate import (
    INCIDENT_TYPES,
    Fact,
    Incident,
    apply,
    declared,
    incident_number,
)
from incidents.incident.correlation.records import AlertRecord, GroupRecord
from incidents.log.ports import ProjectionRows
from incidents.log.projections import ProjectionSpec
from incidents.log.records import StoredEvent

ALERT_TYPES = frozenset({"im.alert.trigger", "im.alert.acknowledge", "im.alert.resolve"})
PROJECTED_TYPES = INCIDENT_TYPES | ALERT_TYPES
# Types whose incident the fold may load (prefetched for a batch in one query).
_FOLDED_PREFIXES = ("im.incident.", "im.alert.", "im.note.")
_COUNTER = "incident_number"
# Alert document keys that identify an alert without describing it.
_IDENTITY_ONLY = frozenset({"key", "provider"})


def _micros(value: object, default: int) -> int:
    # Times in event data come from clients too: anything but a sane integer is ignored.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62:
        return value
    return default


def fact_of(row: StoredEvent, event: Event | None = None) -> Fact:
    """The fold's view of a stored event. ``event``, when given, is the event the row
    was just made from: its data is used as it is instead of decoding the body."""
    if event is None:
        body: dict[str, Any] = orjson.loads(row.body) if row.body else {}
        data = body.get("data")
        related = body.get("related_ids") or ()
    else:
        data = event.data if event.has_data else None
        related = event.related_ids or ()
    return Fact(
        position=row.position,
        type=row.type,
        incident_id=row.incident_id,
        time_us=row.time_us,
        actor=row.actor,
        visibility=row.visibility,
        data=data if isinstance(data, dict) else {},
        related_ids=tuple(r for r in related if isinstance(r, str)),
    )


def alert_key(
    data: object, source: str, fingerprint: str | None, origin_id: str | None, event_id: str
) -> str:
    """The alert an alert event is about: the provider's key, else the event's own ids."""
    alert = data.get("alert") if isinstance(data, dict) else None
    if isinstance(alert, dict) and isinstance(alert.get("key"), str) and alert["key"]:
        return str(alert["key"])
    if fingerprint:
        return f"{source}:{fingerprint}"
    return f"{source}:{origin_id or event_id}"


def alert_key_of(fact: Fact, row: StoredEvent) -> str:
    """The alert key of a stored alert event."""
    return alert_key(fact.data, row.source, row.fingerprint, row.origin_id, row.event_id)


class ProjectionSession:
    """Cached projection state for one transaction, written back by :meth:`flush`."""

    def __init__(self, rows: ProjectionRows) -> None:
        self._rows = rows
        self._incidents: dict[str, Incident | None] = {}
        self._alerts: dict[str, AlertRecord | None] = {}
        self._groups: dict[str, GroupRecord | None] = {}
        self._dirty_incidents: set[str] = set()
        self._dirty_alerts: set[str] = set()
        self._dirty_groups: set[str] = set()
        self._counter: int | None = None
        self._dirty_counter = False
        # Alert and group keys that had no row when loaded (inserted, not upserted, on
        # flush; a rule keyed on a host opens a group for nearly every alert).
        self._new_alerts: set[str] = set()
        self._new_groups: set[str] = set()
        # The label rows each loaded incident has: rewritten only when they change
        # (an alert attaching to an incident changes its counters, not its labels).
        self._stored_labels: dict[str, list[str]] = {}

    # --- reads ---------------------------------------------------------------

    def prepare(self, events: Sequence[Event]) -> None:
        """Load what folding ``events`` will need, one query per table."""
        self.prefetch(
            e.incident_id
            for e in events
            if e.incident_id is not None
            and e.type.startswith(("im.incident.", "im.alert.", "im.note."))
        )
        self.prefetch_alerts(
            alert_key(e.data, e.source, e.fingerprint, e.origin_id, e.id)
            for e in events
            if e.type in ALERT_TYPES
        )

    def prefetch(self, incident_ids: Iterable[str]) -> None:
        """Load several incidents in one query (for a batch about to be folded)."""
        missing = [i for i in set(incident_ids) if i not in self._incidents]
        found = self._rows.load("incidents", missing)
        for incident_id in missing:
            row = found.get(incident_id)
            incident = Incident.from_json(row[-1]) if row else None
            self._incidents[incident_id] = incident
            if incident is not None:
                self._stored_labels[incident_id] = label_keys(incident.labels)

    def incident(self, incident_id: str) -> Incident | None:
        if incident_id not in self._incidents:
            self.prefetch([incident_id])
        return self._incidents[incident_id]

    def prefetch_alerts(self, keys: Iterable[str]) -> None:
        missing = [k for k in set(keys) if k not in self._alerts]
        found = self._rows.load("alerts", missing)
        for key in missing:
            row = found.get(key)
            self._alerts[key] = AlertRecord.from_row(row) if row else None
            if row is None:
                self._new_alerts.add(key)

    def alert(self, key: str) -> AlertRecord | None:
        if key not in self._alerts:
            self.prefetch_alerts([key])
        return self._alerts[key]

    def prefetch_groups(self, keys: Iterable[str]) -> None:
        missing = [k for k in set(keys) if k not in self._groups]
        found = self._rows.load("correlation_groups", missing)
        for key in missing:
            row = found.get(key)
            self._groups[key] = GroupRecord.from_row(row) if row else None
            if row is None:
                self._new_groups.add(key)

    def group(self, key: str) -> GroupRecord | None:
        if key not in self._groups:
            self.prefetch_groups([key])
        return self._groups[key]

    def _highest_number(self) -> int:
        if self._counter is None:
            row = self._rows.load("projection_meta", [_COUNTER]).get(_COUNTER)
            self._counter = int(row[1]) if row else 0
        return self._counter

    def allocate_incident_id(self) -> str:
        """The next free ``INC-n``: gap-free, since only the log's writer allocates."""
        # Folding the declare event moves the counter; a declaration refused after
        # asking leaves it where it was, so the next one takes the same number.
        return f"INC-{self._highest_number() + 1}"

    # --- the fold ------------------------------------------------------------

    def fold(self, row: StoredEvent, event: Event | None = None) -> None:
        """Apply one stored event to whatever it projects into."""
        if row.type not in PROJECTED_TYPES:
            if row.incident_id is None:
                return
            if event is not None:
                has_related = event.related_ids is not None
            else:
                has_related = b'"related_ids"' in row.body
            if has_related:
                self._fold_incident(fact_of(row, event))
            return
        fact = fact_of(row, event)
        if row.type in ALERT_TYPES:
            self._fold_alert(fact, row)
        if row.type == "im.incident.merge" and row.incident_id is not None:
            into = fact.data.get("into")
            if isinstance(into, str) and into and into != row.incident_id:
                self._move_alerts(row.incident_id, into)
        self._fold_incident(fact)

    def _fold_incident(self, fact: Fact) -> None:
        incident_id = fact.incident_id
        if incident_id is None:
            return
        current = self.incident(incident_id)
        if fact.type == "im.incident.declare":
            if current is not None:
                return
            self._incidents[incident_id] = declared(fact)
            self._dirty_incidents.add(incident_id)
            number = incident_number(incident_id)
            if number is not None and number > self._highest_number():
                self._counter = number
                self._dirty_counter = True
            return
        if current is not None and apply(current, fact):
            self._dirty_incidents.add(incident_id)

    def _fold_alert(self, fact: Fact, row: StoredEvent) -> None:
        key = alert_key_of(fact, row)
        record = self.alert(key)
        doc = fact.data.get("alert")
        doc = doc if isinstance(doc, dict) else {}
        correlation = fact.data.get("correlation")
        correlation = correlation if isinstance(correlation, dict) else {}
        previous_incident = record.incident_id if record else None
        was_firing = record is not None and record.status == "firing"
        if record is None:
            record = AlertRecord(
                key=key,
                provider=str(doc.get("provider") or row.source),
                status="firing",
                incident_id=row.incident_id,
                first_us=fact.time_us,
                last_us=fact.time_us,
                last_position=fact.position,
            )
            self._alerts[key] = record
        record.events += 1
        record.last_us = max(record.last_us, fact.time_us)
        record.last_position = fact.position
        # A document that only names the alert (an acknowledgement from the console
        # says which alert, not what it is) leaves the description as it was.
        if doc and not doc.keys() <= _IDENTITY_ONLY:
            record.alert = doc
            severity = doc.get("severity")
            summary = doc.get("summary") or doc.get("name")
            visibility = row.visibility or "public"
            carried = (severity is None and record.severity is not None) or (
                summary is None and record.summary is not None
            )
            # A severity or summary kept from an earlier document keeps its event's
            # visibility among those a reader must be allowed to see (all of them for
            # a row folded before they were recorded).
            earlier: Iterable[str] = ()
            if carried:
                known = record.document_visibilities
                earlier = VISIBILITIES if known is None else known
            record.document_visibilities = sorted({*earlier, visibility})
            record.severity = str(severity) if severity is not None else record.severity
            record.summary = str(summary) if summary is not None else record.summary
        rule = correlation.get("rule")
        if isinstance(rule, str):
            record.rule = rule
        if row.incident_id is not None:
            record.incident_id = row.incident_id
        if fact.type == "im.alert.trigger":
            record.status = "firing"
        elif fact.type == "im.alert.resolve":
            record.status = "resolved"
        self._dirty_alerts.add(key)

        # The incident's alert counters follow the alert.
        now_firing = record.status == "firing"
        if previous_incident is not None and previous_incident != record.incident_id:
            self._count(previous_incident, -1, -1 if was_firing else 0)
            was_firing = False
            previous_incident = None
        if record.incident_id is not None:
            new = previous_incident is None
            delta_firing = int(now_firing) - int(was_firing)
            if new or delta_firing:
                self._count(record.incident_id, 1 if new else 0, delta_firing)

        groups = correlation.get("groups")
        for group in groups if isinstance(groups, list) else []:
            if not isinstance(group, dict) or not isinstance(group.get("key"), str):
                continue
            incident_id = group.get("incident_id") or row.incident_id
            if not isinstance(incident_id, str):
                continue
            self._groups[group["key"]] = GroupRecord(
                group["key"],
                incident_id,
                str(group.get("rule", "")),
                _micros(group.get("opened_us"), fact.time_us),
                _micros(group.get("last_us"), fact.time_us),
            )
            self._dirty_groups.add(group["key"])

    def _count(self, incident_id: str, alerts: int, firing: int) -> None:
        incident = self.incident(incident_id)
        if incident is None:
            return
        incident.alert_count = max(0, incident.alert_count + alerts)
        incident.firing_alerts = max(0, incident.firing_alerts + firing)
        self._dirty_incidents.add(incident_id)

    def firing_alerts(self, incident_id: str) -> list[AlertRecord]:
        """The alerts still firing on an incident (after pending changes)."""
        self._flush_alerts()
        rows = self._rows.select("alerts", "incident_id", incident_id)
        for row in rows:
            if row[0] not in self._alerts:
                self._alerts[row[0]] = AlertRecord.from_row(row)
        return [
            a
            for a in self._alerts.values()
            if a is not None and a.incident_id == incident_id and a.status == "firing"
        ]

    def alerts_of(self, incident_id: str) -> list[AlertRecord]:
        self.firing_alerts(incident_id)
        return [a for a in self._alerts.values() if a is not None and a.incident_id == incident_id]

    def _move_alerts(self, source: str, target: str) -> None:
        """A merge: the duplicate's alerts and groups now belong to the target."""
        for alert in self.alerts_of(source):
            alert.incident_id = target
            self._dirty_alerts.add(alert.key)
        self._flush_groups()
        for row in self._rows.select("correlation_groups", "incident_id", source):
            self._groups.setdefault(row[0], GroupRecord.from_row(row))
        for group in self._groups.values():
            if group is not None and group.incident_id == source:
                group.incident_id = target
                self._dirty_groups.add(group.key)

    # --- writing back --------------------------------------------------------

    def _flush_alerts(self) -> None:
        # Alerts with no row when loaded are inserted; the rest replace their rows.
        new = sorted(self._dirty_alerts & self._new_alerts)
        changed = sorted(self._dirty_alerts - self._new_alerts)
        self._rows.insert("alerts", [a.to_row() for k in new if (a := self._alerts[k])])
        self._rows.save("alerts", [a.to_row() for k in changed if (a := self._alerts[k])])
        self._new_alerts.difference_update(new)
        self._dirty_alerts.clear()

    def _flush_groups(self) -> None:
        new = sorted(self._dirty_groups & self._new_groups)
        changed = sorted(self._dirty_groups - self._new_groups)
        for write, keys in ((self._rows.insert, new), (self._rows.save, changed)):
            write("correlation_groups", [g.to_row() for k in keys if (g := self._groups[k])])
        self._new_groups.difference_update(new)
        self._dirty_groups.clear()

    def flush(self) -> None:
        """Write every changed row (inside the caller's transaction)."""
        if self._dirty_incidents:
            changed = [self._incidents[i] for i in sorted(self._dirty_incidents)]
            present = [i for i in changed if i is not None]
            self._rows.save("incidents", [incident_row(i) for i in present])
            relabelled: dict[str, list[str]] = {}
            for incident in present:
                labels = label_keys(incident.labels)
                if self._stored_labels.get(incident.id) != labels:
                    relabelled[incident.id] = labels
            self._rows.delete("incident_labels", "incident_id", list(relabelled))
            self._rows.save(
                "incident_labels",
                [(i, label) for i, labels in relabelled.items() for label in labels],
            )
            self._stored_labels.update(relabelled)
            self._dirty_incidents.clear()
        self._flush_alerts()
        self._flush_groups()
        if self._dirty_counter and self._counter is not None:
            self._rows.save("projection_meta", [(_COUNTER, self._counter)])
            self._dirty_counter = False


def label_keys(labels: dict[str, str]) -> list[str]:
    """How labels are indexed: ``key=value``, or ``key`` alone for a bare label."""
    return sorted({f"{k}={v}" if v else k for k, v in labels.items()})


def incident_row(incident: Incident) -> tuple[Any, ...]:
    """The ``incidents`` row (column order of the table)."""
    return (
        incident.id,
        incident.number,
        incident.title,
        incident.title.lower(),
        incident.status,
        incident.severity,
        incident.service,
        incident.commander,
        incident.classification,
        incident.parent_id,
        incident.declared_us,
        incident.updated_us,
        incident.last_position,
        incident.to_json(),
    )


class _ScratchRows:
    """Projection rows that start empty and keep what a session writes, in memory.

    A refold folds one incident's chain into a fresh :class:`ProjectionSession` over
    these, then copies back the rows it can vouch for. Nothing is read from the store:
    every record the session needs it builds itself from the chain (its own cache
    serves the lookups ``select`` would make).
    """

    def __init__(self) -> None:
        self.tables: dict[str, dict[Any, tuple[Any, ...]]] = {}

    def load(self, table: str, keys: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        rows = self.tables.get(table, {})
        return {k: rows[k] for k in keys if k in rows}

    def save(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        kept = self.tables.setdefault(table, {})
        for row in rows:
            kept[row[0] if table != "incident_labels" else tuple(row)] = tuple(row)

    def insert(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        self.save(table, rows)

    def delete(self, table: str, column: str, values: Sequence[str]) -> None:
        rows = self.tables.get(table, {})
        for key in [k for k, row in rows.items() if row[0] in values]:
            del rows[key]

    def select(self, table: str, column: str, value: str) -> list[tuple[Any, ...]]:
        return []

    def truncate(self, tables: Sequence[str]) -> None:
        for table in tables:
            self.tables.pop(table, None)


def refold_incident(rows: ProjectionRows, incident_id: str, chain: Sequence[StoredEvent]) -> None:
    """Rewrite the incident's row, its labels, and the alerts whose every event is on
    its chain, from the chain (after one of its events changed in place).

    The alert counters stay as stored: they follow alert keys and event types, which
    an erasure never changes (it refuses the fields that name an alert or a merge),
    and alerts merged in from other incidents have their events on other chains.
    An alert with events on other chains too keeps its row.
    """
    scratch = _ScratchRows()
    session = ProjectionSession(scratch)
    for row in chain:
        session.fold(row)
    session.flush()
    folded = scratch.tables.get("incidents", {}).get(incident_id)
    if folded is not None:
        incident = Incident.from_json(bytes(folded[-1]))
        stored = rows.load("incidents", [incident_id]).get(incident_id)
        if stored is not None:
            before = Incident.from_json(bytes(stored[-1]))
            incident.alert_count = before.alert_count
            incident.firing_alerts = before.firing_alerts
        rows.save("incidents", [incident_row(incident)])
        rows.delete("incident_labels", "incident_id", [incident_id])
        rows.save("incident_labels", [(incident_id, k) for k in label_keys(incident.labels)])
    refolded = scratch.tables.get("alerts", {})
    stored_alerts = rows.load("alerts", list(refolded))
    whole = [
        row
        for key, row in refolded.items()
        if (live := stored_alerts.get(key)) is not None
        and AlertRecord.from_row(live).events == AlertRecord.from_row(row).events
        and live[1] == row[1]
    ]
    rows.save("alerts", whole)


# The name the incident domain's projection is registered under.
INCIDENTS = "incidents"


def incident_projection() -> ProjectionSpec:
    """Incidents, their labels, alerts and correlation groups, as one projection."""
    return ProjectionSpec(
        INCIDENTS,
        # Every event: the fold picks incident, alert and note events itself.
        None,
        ProjectionSession,
        ("incidents", "incident_labels", "alerts", "correlation_groups"),
        refold_incident,
    )
