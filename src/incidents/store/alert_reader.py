"""Listing alerts from the ``alerts`` projection, newest first, one keyset page at a time.

An alert is shown to a reader who may see both the incident it is attached to (its
classification) and its latest event (that event's visibility). Cursors are sealed by the timeline's
:class:`CursorCodec` (signed, bound to the filters they were issued for), so a
tampered cursor or one reused with other filters is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson
from sqlalchemy import Engine, and_, func, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from incidents.incident.correlation.records import AlertRecord
from incidents.log.query import CursorCodec, InvalidQuery
from incidents.store.schema import alerts, incidents, timeline_events

STATUSES = ("firing", "resolved")


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alerts a listing selects."""

    status: str | None = None
    incident_id: str | None = None
    unattached: bool = False
    provider: str | None = None
    # Classifications the reader may see; None means no restriction.
    visibilities: frozenset[str] | None = None

    def digest(self) -> bytes:
        # Named, so no other listing's cursor can carry the same digest.
        parts = ["alerts", self.status, self.incident_id, self.unattached, self.provider]
        return hashlib.sha256(orjson.dumps(parts)).digest()[:8]


@dataclass(frozen=True, slots=True)
class ListedAlert:
    """One alert of a listing, with the classification that governs who sees it."""

    record: AlertRecord
    visibility: str


@dataclass(frozen=True, slots=True)
class AlertPage:
    alerts: list[ListedAlert]
    next_cursor: str | None


class AlertReader:
    """Pages over the alerts projection, filtered and limited to what a reader may see."""

    def __init__(self, engine: Engine, cursors: CursorCodec) -> None:
        self._engine = engine
        self._cursors = cursors

    def _decode(self, filt: AlertFilter, token: str) -> tuple[int, str]:
        key = self._cursors.unseal(
            token, filt.digest(), "status, incident_id, unattached and provider"
        )
        if len(key) != 2 or not isinstance(key[0], int) or not isinstance(key[1], str):
            raise InvalidQuery("cursor", "is not a cursor of this listing")
        return key[0], key[1]

    def page(self, filt: AlertFilter, cursor: str | None, limit: int) -> AlertPage:
        """One page of alerts, newest first, and the cursor of the next page."""
        after = self._decode(filt, cursor) if cursor else None
        # Public is stored as NULL on events; an attached alert follows its incident.
        visibility = func.coalesce(
            incidents.c.classification, timeline_events.c.visibility, "public"
        ).label("visibility")
        stmt = (
            select(*alerts.c, visibility)
            .select_from(
                alerts.outerjoin(
                    incidents, incidents.c.incident_id == alerts.c.incident_id
                ).outerjoin(timeline_events, timeline_events.c.position == alerts.c.last_position)
            )
            .where(*self._conditions(filt, visibility))
        )
        if after is not None:
            first_us, key = after
            stmt = stmt.where(
                or_(
                    alerts.c.first_us < first_us,
                    and_(alerts.c.first_us == first_us, alerts.c.alert_key < key),
                )
            )
        stmt = stmt.order_by(alerts.c.first_us.desc(), alerts.c.alert_key.desc()).limit(limit + 1)
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        listed = [ListedAlert(AlertRecord.from_row(tuple(r[:-1])), str(r[-1])) for r in rows]
        next_cursor = None
        if len(listed) > limit:
            listed = listed[:limit]
            last = listed[-1].record
            next_cursor = self._cursors.seal([last.first_us, last.key], filt.digest())
        return AlertPage(listed, next_cursor)

    @staticmethod
    def _conditions(filt: AlertFilter, visibility: ColumnElement[str]) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = [true()]
        if filt.status is not None:
            conds.append(alerts.c.status == filt.status)
        if filt.incident_id is not None:
            conds.append(alerts.c.incident_id == filt.incident_id)
        if filt.unattached:
            conds.append(alerts.c.incident_id.is_(None))
        if filt.provider is not None:
            conds.append(alerts.c.provider == filt.provider)
        if filt.visibilities is not None:
            opened = sorted(filt.visibilities)
            conds.append(
                or_(incidents.c.classification.is_(None), incidents.c.classification.in_(opened))
            )
            conds.append(func.coalesce(timeline_events.c.visibility, "public").in_(opened))
        return conds
