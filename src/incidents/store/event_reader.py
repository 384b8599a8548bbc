"""Read queries on the timeline, portable across SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from sqlalchemy import Engine, and_, func, insert, or_, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from incidents.events.attributes import VISIBILITIES
from incidents.log.query import Cursor, TimelineFilter, glob_to_like
from incidents.log.records import EVENT_COLUMNS, ChainHead, StoredEvent
from incidents.store.schema import chain_heads, instance_secrets, log_head, timeline_events

_t = timeline_events.c
_ALL_VISIBILITIES = VISIBILITIES
_COLUMNS = [timeline_events.c[name] for name in EVENT_COLUMNS]


def _conditions(filt: TimelineFilter) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if filt.incident_id is not None:
        conds.append(_t.incident_id == filt.incident_id)
    if filt.types:
        alternatives: list[ColumnElement[bool]] = []
        for pattern in filt.types:
            if "*" in pattern or "?" in pattern:
                alternatives.append(_t.type.like(glob_to_like(pattern), escape="\\"))
            else:
                alternatives.append(_t.type == pattern)
        conds.append(or_(*alternatives))
    if filt.from_us is not None:
        conds.append(_t.time_us >= filt.from_us)
    if filt.to_us is not None:
        conds.append(_t.time_us <= filt.to_us)
    if filt.actor is not None:
        conds.append(_t.actor == filt.actor)
    if filt.correlation_key is not None:
        conds.append(_t.correlation_key == filt.correlation_key)
    if filt.fingerprint is not None:
        conds.append(_t.fingerprint == filt.fingerprint)
    if filt.max_position is not None:
        conds.append(_t.position <= filt.max_position)
    if filt.visibilities is not None and not filt.visibilities >= _ALL_VISIBILITIES:
        # Filtered in SQL, so pages stay full and counts stay honest. Written against the
        # bare column (public is stored as NULL) so the planner can use its statistics:
        # a coalesce() expression is estimated blindly and led to a bitmap scan + sort.
        opened = sorted(filt.visibilities)
        visible = _t.visibility.in_(opened)
        conds.append(or_(_t.visibility.is_(None), visible) if "public" in opened else visible)
    return conds


class EventReader:
    """Queries over ``timeline_events`` and its companion tables."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def page(self, filt: TimelineFilter, after: Cursor | None, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` events matching ``filt`` strictly after ``after`` in the order."""
        conds = _conditions(filt)
        key = tuple_(_t.time_us, _t.position)
        if after is not None:
            bound = tuple_(after.time_us, after.position)
            conds.append(key < bound if filt.descending else key > bound)
        order = (
            (_t.time_us.desc(), _t.position.desc())
            if filt.descending
            else (_t.time_us.asc(), _t.position.asc())
        )
        stmt = select(*_COLUMNS).where(and_(*conds)).order_by(*order).limit(limit)
        with self._engine.connect() as conn:
            return [StoredEvent(*row) for row in conn.execute(stmt)]

    def iterate(self, filt: TimelineFilter, chunk: int = 1000) -> Iterator[StoredEvent]:
        """Every matching event, in order, fetched in keyset chunks (flat memory)."""
        after: Cursor | None = None
        while True:
            rows = self.page(filt, after, chunk)
            yield from rows
            if len(rows) < chunk:
                return
            after = Cursor(rows[-1].time_us, rows[-1].position)

    def count(self, filt: TimelineFilter) -> int:
        """How many events match ``filt`` (cursor and order aside)."""
        stmt = select(func.count()).select_from(timeline_events).where(and_(*_conditions(filt)))
        with self._engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def by_event_id(
        self,
        event_id: str,
        source: str | None = None,
        visibilities: frozenset[str] | None = None,
    ) -> list[StoredEvent]:
        """Events stored under a CloudEvent id (ids are unique only per source) that a
        reader with ``visibilities`` may see."""
        stmt = select(*_COLUMNS).where(
            _t.event_id == event_id, *_conditions(TimelineFilter(visibilities=visibilities))
        )
        if source is not None:
            stmt = stmt.where(_t.source == source)
        stmt = stmt.order_by(_t.position).limit(10)
        with self._engine.connect() as conn:
            return [StoredEvent(*row) for row in conn.execute(stmt)]

    def in_position_order(self, up_to: int, chunk: int = 2000) -> Iterator[StoredEvent]:
        """Every event up to position ``up_to``, in position order (for rebuilds)."""
        last = 0
        while last < up_to:
            stmt = (
                select(*_COLUMNS)
                .where(_t.position > last, _t.position <= up_to)
                .order_by(_t.position)
                .limit(chunk)
            )
            with self._engine.connect() as conn:
                rows = [StoredEvent(*row) for row in conn.execute(stmt)]
            yield from rows
            if len(rows) < chunk:
                return
            last = rows[-1].position

    def after_position(
        self, position: int, filt: TimelineFilter, limit: int, up_to: int | None = None
    ) -> list[StoredEvent]:
        """Up to ``limit`` events matching ``filt`` after ``position`` (and at most
        ``up_to``), in position order: what a live stream sends next."""
        conds = [*_conditions(filt), _t.position > position]
        if up_to is not None:
            conds.append(_t.position <= up_to)
        stmt = select(*_COLUMNS).where(and_(*conds)).order_by(_t.position).limit(limit)
        with self._engine.connect() as conn:
            return [StoredEvent(*row) for row in conn.execute(stmt)]

    def chain(self, incident_id: str | None, chunk: int = 1000) -> Iterator[StoredEvent]:
        """The events of one chain in position order."""
        cond = _t.incident_id.is_(None) if incident_id is None else _t.incident_id == incident_id
        last = 0
        while True:
            stmt = (
                select(*_COLUMNS).where(cond, _t.position > last).order_by(_t.position).limit(chunk)
            )
            with self._engine.connect() as conn:
                rows = [StoredEvent(*row) for row in conn.execute(stmt)]
            yield from rows
            if len(rows) < chunk:
                return
            last = rows[-1].position

    def chain_head(self, chain_key: str) -> ChainHead | None:
        """The recorded tip of one hash chain, or None if the chain has no events."""
        stmt = select(
            chain_heads.c.last_position, chain_heads.c.last_hash, chain_heads.c.event_count
        ).where(chain_heads.c.chain_key == chain_key)
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else ChainHead(row[0], bytes(row[1]), row[2])

    def head_position(self) -> int:
        """The highest position handed out so far (0 for an empty log)."""
        with self._engine.connect() as conn:
            return int(
                conn.execute(select(log_head.c.position).where(log_head.c.id == 1)).scalar_one()
            )

    def ping(self) -> None:
        """Raise if the database does not answer."""
        self.head_position()

    def instance_secret(self, name: str, size: int = 32) -> bytes:
        """A random secret shared by every instance on this database, made on first use."""
        stmt = select(instance_secrets.c.value).where(instance_secrets.c.name == name)
        with self._engine.connect() as conn:
            value = conn.execute(stmt).scalar_one_or_none()
        if value is not None:
            return bytes(value)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(instance_secrets).values(name=name, value=secrets.token_bytes(size))
                )
        except IntegrityError:
            pass  # another instance made it first; use theirs
        with self._engine.connect() as conn:
            return bytes(conn.execute(stmt).scalar_one())
