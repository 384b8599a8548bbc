"""Read queries on the orchestrator's projections (incidents, alerts), for both backends."""

from __future__ import annotations

from sqlalchemy import Engine, select

from incidents.correlation.records import AlertRecord
from incidents.orchestrator.incident import Incident
from incidents.store.schema import alerts, incidents, projection_meta


class IncidentReader:
    """Queries over the ``incidents`` and ``alerts`` projections."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, incident_id: str) -> Incident | None:
        stmt = select(incidents.c.state).where(incidents.c.incident_id == incident_id)
        with self._engine.connect() as conn:
            raw = conn.execute(stmt).scalar_one_or_none()
        return Incident.from_json(raw) if raw is not None else None

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
