"""Read queries on the incident projections (incidents, alerts), for both backends."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, and_, exists, or_, select

from incidents.incident.aggregate import Incident
from incidents.incident.correlation.records import AlertRecord
from incidents.incident.listing import IncidentQuery
from incidents.store.schema import alerts, incident_labels, incidents, projection_meta


class IncidentReader:
    """Queries over the ``incidents`` and ``alerts`` projections."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, incident_id: str) -> Incident | None:
        stmt = select(incidents.c.state).where(incidents.c.incident_id == incident_id)
        with self._engine.connect() as conn:
            raw = conn.execute(stmt).scalar_one_or_none()
        return Incident.from_json(raw) if raw is not None else None

    def classifications(self, incident_ids: Iterable[str]) -> dict[str, str]:
        """The classification of each of the incidents that exist."""
        wanted = sorted(set(incident_ids))
        found: dict[str, str] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                stmt = select(incidents.c.incident_id, incidents.c.classification).where(
                    incidents.c.incident_id.in_(wanted[start : start + 500])
                )
                found.update((row[0], row[1]) for row in conn.execute(stmt))
        return found

    def page(
        self,
        query: IncidentQuery,
        visibilities: frozenset[str] | None,
        after: tuple[int, str] | None,
        limit: int,
    ) -> list[Incident]:
        """Up to ``limit`` matching incidents, newest first, after the key ``after``."""
        c = incidents.c
        stmt = select(c.state).order_by(c.declared_us.desc(), c.incident_id.desc()).limit(limit)
        if visibilities is not None:
            stmt = stmt.where(c.classification.in_(sorted(visibilities)))
        if query.statuses:
            stmt = stmt.where(c.status.in_(query.statuses))
        if query.severities:
            stmt = stmt.where(c.severity.in_(query.severities))
        if query.service is not None:
            stmt = stmt.where(c.service == query.service)
        if query.commander is not None:
            stmt = stmt.where(c.commander == query.commander)
        for label in query.labels:
            stmt = stmt.where(
                exists().where(
                    and_(
                        incident_labels.c.incident_id == c.incident_id,
                        incident_labels.c.label == label,
                    )
                )
            )
        if query.text is not None:
            escaped = query.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(c.title_lower.like(f"%{escaped}%", escape="\\"))
        if after is not None:
            declared_us, incident_id = after
            stmt = stmt.where(
                or_(
                    c.declared_us < declared_us,
                    and_(c.declared_us == declared_us, c.incident_id < incident_id),
                )
            )
        with self._engine.connect() as conn:
            return [Incident.from_json(raw) for raw in conn.execute(stmt).scalars()]

    def children(self, incident_id: str) -> list[Incident]:
        stmt = (
            select(incidents.c.state)
            .where(incidents.c.parent_id == incident_id)
            .order_by(incidents.c.declared_us, incidents.c.incident_id)
        )
        with self._engine.connect() as conn:
            return [Incident.from_json(raw) for raw in conn.execute(stmt).scalars()]

    def alerts_of(self, incident_id: str) -> list[AlertRecord]:
        stmt = (
            select(*alerts.c)
            .where(alerts.c.incident_id == incident_id)
            .order_by(alerts.c.first_us, alerts.c.alert_key)
        )
        with self._engine.connect() as conn:
            return [AlertRecord.from_row(tuple(row)) for row in conn.execute(stmt)]

    def meta(self, name: str) -> int | None:
        stmt = select(projection_meta.c.value).where(projection_meta.c.name == name)
        with self._engine.connect() as conn:
            value = conn.execute(stmt).scalar_one_or_none()
        return int(value) if value is not None else None
