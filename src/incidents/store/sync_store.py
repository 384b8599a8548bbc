"""The sync engine's tables on both backends: links, ledger, conflicts, poll cursors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    String,
    and_,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError

from incidents.store.schema import (
    outbox,
    sync_conflicts,
    sync_ledger,
    sync_links,
    sync_poll_leases,
    sync_polls,
)
from incidents.sync.ports import Conflict, ConnectorStatus, Link

_l = sync_links.c
_c = sync_conflicts.c


def _link(row: Any) -> Link:
    return Link(
        connector=row.connector,
        incident_id=row.incident_id,
        external_id=row.external_id,
        key=row.external_key,
        url=row.url,
        base=json.loads(row.base),
        seen_version=row.seen_version,
        written_version=row.written_version,
        created_us=row.created_us,
        synced_us=row.synced_us,
        recorded=bool(row.recorded),
    )


def _conflict(row: Any) -> Conflict:
    return Conflict(
        id=row.id,
        connector=row.connector,
        incident_id=row.incident_id,
        field=row.field,
        ours=row.ours,
        theirs=row.theirs,
        base=row.base,
        reason=row.reason,
        created_us=row.created_us,
        resolved_us=row.resolved_us,
        resolution=row.resolution,
        resolved_value=row.resolved_value,
        resolved_by=row.resolved_by,
    )


class SqlSyncStore:
    """:class:`incidents.sync.ports.SyncStore` over SQLAlchemy Core."""

    def __init__(self, engine: Engine, *, clock: Callable[[], int] | None = None) -> None:
        """``clock`` replaces the database's clock for poll leases (tests drive time
        with it); by default the database's own clock decides them."""
        self._engine = engine
        self._clock = clock

    def _one_link(self, where: Any) -> Link | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(sync_links).where(where).limit(1)).first()
        return _link(row) if row is not None else None

    def link(self, connector: str, incident_id: str) -> Link | None:
        return self._one_link(and_(_l.connector == connector, _l.incident_id == incident_id))

    def link_by_external(self, connector: str, external_id: str) -> Link | None:
        if not external_id:
            return None
        return self._one_link(and_(_l.connector == connector, _l.external_id == external_id))

    def links_of(self, incident_id: str) -> list[Link]:
        stmt = select(sync_links).where(_l.incident_id == incident_id).order_by(_l.connector)
        with self._engine.connect() as conn:
            return [_link(row) for row in conn.execute(stmt)]

    def links(self, connector: str) -> list[Link]:
        stmt = select(sync_links).where(_l.connector == connector).order_by(_l.incident_id)
        with self._engine.connect() as conn:
            return [_link(row) for row in conn.execute(stmt)]

    def begin_create(self, connector: str, incident_id: str, now_us: int) -> bool:
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(sync_links).values(
                        connector=connector,
                        incident_id=incident_id,
                        external_id="",
                        external_key="",
                        base="{}",
                        created_us=now_us,
                        synced_us=0,
                    )
                )
        except IntegrityError:
            return False
        return True

    def save_link(self, link: Link) -> None:
        values = {
            "external_id": link.external_id,
            "external_key": link.key,
            "url": link.url,
            "base": json.dumps(dict(link.base), sort_keys=True),
            "seen_version": link.seen_version,
            "written_version": link.written_version,
            "synced_us": link.synced_us,
        }
        where = and_(_l.connector == link.connector, _l.incident_id == link.incident_id)
        with self._engine.begin() as conn:
            done = conn.execute(update(sync_links).where(where).values(**values)).rowcount
            if not done:
                conn.execute(
                    insert(sync_links).values(
                        connector=link.connector,
                        incident_id=link.incident_id,
                        created_us=link.created_us,
                        **values,
                    )
                )

    def mark_recorded(self, connector: str, incident_id: str) -> None:
        where = and_(_l.connector == connector, _l.incident_id == incident_id)
        with self._engine.begin() as conn:
            conn.execute(update(sync_links).where(where).values(recorded=True))

    def ledger_add(self, connector: str, key: str, now_us: int) -> bool:
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(sync_ledger).values(connector=connector, key=key, created_us=now_us)
                )
        except IntegrityError:
            return False
        return True

    def ledger_has(self, connector: str, key: str) -> bool:
        stmt = select(sync_ledger.c.key).where(
            sync_ledger.c.connector == connector, sync_ledger.c.key == key
        )
        with self._engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    def _open_for(self, conn: Connection, conflict: Conflict) -> Conflict | None:
        stmt = select(sync_conflicts).where(
            _c.connector == conflict.connector,
            _c.incident_id == conflict.incident_id,
            _c.field == conflict.field,
            _c.resolved_us.is_(None),
        )
        row = conn.execute(stmt.limit(1)).first()
        return _conflict(row) if row is not None else None

    def open_conflict(self, conflict: Conflict) -> Conflict:
        with self._engine.begin() as conn:
            existing = self._open_for(conn, conflict)
            if existing is not None:
                return existing
            conn.execute(
                insert(sync_conflicts).values(
                    id=conflict.id,
                    connector=conflict.connector,
                    incident_id=conflict.incident_id,
                    field=conflict.field,
                    ours=conflict.ours,
                    theirs=conflict.theirs,
                    base=conflict.base,
                    reason=conflict.reason[:500],
                    created_us=conflict.created_us,
                )
            )
        return conflict

    def conflicts(self, *, open_only: bool, connector: str | None = None) -> list[Conflict]:
        stmt = select(sync_conflicts).order_by(_c.created_us, _c.id)
        if open_only:
            stmt = stmt.where(_c.resolved_us.is_(None))
        if connector is not None:
            stmt = stmt.where(_c.connector == connector)
        with self._engine.connect() as conn:
            return [_conflict(row) for row in conn.execute(stmt)]

    def conflict(self, conflict_id: str) -> Conflict | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(sync_conflicts).where(_c.id == conflict_id)).first()
        return _conflict(row) if row is not None else None

    def open_conflict_fields(self, connector: str, incident_id: str) -> set[str]:
        stmt = select(_c.field).where(
            _c.connector == connector, _c.incident_id == incident_id, _c.resolved_us.is_(None)
        )
        with self._engine.connect() as conn:
            return {row[0] for row in conn.execute(stmt)}

    def resolve_conflict(
        self, conflict_id: str, resolution: str, value: str | None, by: str, now_us: int
    ) -> Conflict | None:
        stmt = (
            update(sync_conflicts)
            .where(_c.id == conflict_id, _c.resolved_us.is_(None))
            .values(resolved_us=now_us, resolution=resolution, resolved_value=value, resolved_by=by)
        )
        with self._engine.begin() as conn:
            if not conn.execute(stmt).rowcount:
                return None
        return self.conflict(conflict_id)

    def cursor(self, connector: str) -> int | None:
        stmt = select(sync_polls.c.cursor_us).where(sync_polls.c.connector == connector)
        with self._engine.connect() as conn:
            value = conn.execute(stmt).scalar_one_or_none()
        return int(value) if value is not None else None

    def _now(self) -> ColumnElement[int]:
        """The time lease expiries are set and compared by, in microseconds: the
        database's clock, so hosts whose clocks disagree still agree on a lease."""
        if self._clock is not None:
            return literal(self._clock(), BigInteger)
        if self._engine.dialect.name == "postgresql":
            sql = "(extract(epoch from clock_timestamp()) * 1000000)::bigint"
        else:
            sql = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)"
        return literal_column(sql, BigInteger)

    def _holds(self, connector: str, holder: str) -> ColumnElement[bool]:
        """Whether ``holder``'s lease of ``connector`` is live now (a SQL condition)."""
        leases = sync_poll_leases.c
        return exists().where(
            leases.connector == connector,
            leases.holder == holder,
            leases.expires_us > self._now(),
        )

    def save_poll(
        self,
        connector: str,
        cursor_us: int | None,
        now_us: int,
        error: str | None,
        *,
        holder: str | None = None,
    ) -> bool:
        values = {"cursor_us": cursor_us, "polled_us": now_us, "last_error": error}
        polls = sync_polls.c
        # A poller saves only while its lease is live, in the same statement, so one
        # that lost it mid-poll never writes its older cursor over its successor's.
        fence = true() if holder is None else self._holds(connector, holder)
        with self._engine.begin() as conn:
            stmt = update(sync_polls).where(polls.connector == connector, fence).values(**values)
            if conn.execute(stmt).rowcount:
                return True
            if conn.execute(select(polls.connector).where(polls.connector == connector)).first():
                return False  # the lease is gone
        row = select(
            literal(connector, String),
            literal(cursor_us, BigInteger),
            literal(now_us, BigInteger),
            literal(error, String),
        ).where(fence)
        columns = ["connector", "cursor_us", "polled_us", "last_error"]
        try:
            with self._engine.begin() as conn:
                added = insert(sync_polls).from_select(columns, row).returning(polls.connector)
                return conn.execute(added).first() is not None
        except IntegrityError:
            return False  # saved meanwhile by the lease's holder

    def take_poll_lease(self, connector: str, holder: str, lease_us: int) -> bool:
        leases = sync_poll_leases.c
        now = self._now()
        # Renew our own lease or take an expired one, in one conditional write: of two
        # processes racing for it, exactly one sees its row updated.
        stmt = (
            update(sync_poll_leases)
            .where(
                leases.connector == connector,
                or_(leases.holder == holder, leases.expires_us <= now),
            )
            .values(holder=holder, expires_us=now + lease_us)
        )
        with self._engine.begin() as conn:
            if conn.execute(stmt).rowcount:
                return True
            held = select(leases.holder).where(leases.connector == connector)
            if conn.execute(held).first() is not None:
                return False  # held by another process
        row = select(
            literal(connector, String), literal(holder, String), (now + lease_us).label("x")
        )
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(sync_poll_leases).from_select(["connector", "holder", "expires_us"], row)
                )
        except IntegrityError:
            return False  # another process took it first
        return True

    def release_poll_lease(self, connector: str, holder: str) -> None:
        leases = sync_poll_leases.c
        stmt = (
            update(sync_poll_leases)
            .where(leases.connector == connector, leases.holder == holder)
            .values(expires_us=0)
        )
        with self._engine.begin() as conn:
            conn.execute(stmt)

    def status(self, connector: str) -> ConnectorStatus:
        with self._engine.connect() as conn:
            links = conn.execute(
                select(func.count()).select_from(sync_links).where(_l.connector == connector)
            ).scalar_one()
            conflicts = conn.execute(
                select(func.count())
                .select_from(sync_conflicts)
                .where(_c.connector == connector, _c.resolved_us.is_(None))
            ).scalar_one()
            poll = conn.execute(
                select(sync_polls).where(sync_polls.c.connector == connector)
            ).first()
            undelivered = conn.execute(
                select(outbox.c.dead_us.is_(None), func.count())
                .where(outbox.c.processed_us.is_(None), outbox.c.destination == connector)
                .group_by(outbox.c.dead_us.is_(None))
            ).all()
        counts = {bool(alive): int(n) for alive, n in undelivered}
        return ConnectorStatus(
            connector=connector,
            links=int(links),
            open_conflicts=int(conflicts),
            last_poll_us=poll.polled_us if poll is not None else None,
            last_change_us=poll.cursor_us if poll is not None else None,
            last_error=poll.last_error if poll is not None else None,
            pending=counts.get(True, 0),
            dead=counts.get(False, 0),
        )
