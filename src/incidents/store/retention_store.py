"""Retention's storage: candidates, holds, the archive, purges and erasures.

Every change takes the log's write lock first (``SELECT ... FOR UPDATE`` on
``log_head``; ``BEGIN IMMEDIATE`` on SQLite), exactly as an append does, so it is
serialised with every writer of every process: an event appended before the lock is
covered (and counted in the tombstone), one appended after it waits and lands after
the change. Whether the step is still due is decided again under the lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import replace
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from incidents.events.envelope import dedupe_id_of
from incidents.incident.aggregate import Incident
from incidents.log.chain import GENESIS, NO_INCIDENT, row_digest
from incidents.log.ports import ProjectionRows
from incidents.log.records import EVENT_COLUMNS, StoredEvent
from incidents.retention.archive_codec import CHUNK_EVENTS, decode_chunk, encode_chunk
from incidents.retention.erasure import ErasureError, check_erasable, erase_fields
from incidents.retention.holds import HOLD_TYPES, PLACE, Hold
from incidents.retention.ports import RetentionConflict, Sign, StillDue
from incidents.retention.tiers import FINISHED, Candidate
from incidents.retention.tombstone import Tombstone, TombstoneKind
from incidents.store.engine import Backend, writes
from incidents.store.projection_store import ProjectionStore
from incidents.store.schema import (
    alerts,
    archived_dedupe_keys,
    archived_event_ids,
    archived_events,
    boards,
    chain_heads,
    chat_channels,
    correlation_groups,
    incident_labels,
    incidents,
    log_head,
    outbox,
    retention_tombstones,
    sync_conflicts,
    sync_links,
    timeline_events,
)

_t = timeline_events.c
_a = archived_events.c
_s = retention_tombstones.c
_COLUMNS = [timeline_events.c[name] for name in EVENT_COLUMNS]


# Rewrites the projections of one incident from its chain, in the caller's transaction.
Reproject = Callable[[ProjectionRows, str, Sequence[StoredEvent]], None]


def reads_only(_rows: ProjectionRows, incident_id: str, _chain: Sequence[StoredEvent]) -> None:
    """The ``reproject`` of a store opened only to read (tombstones, for a backup's
    chain check): an erasure through it would leave projections stale, so it fails."""
    raise RuntimeError(f"{incident_id}: this retention store is opened for reading only")


def _finished(status: str | None, state: bytes | None) -> int | None:
    if status is None or state is None or status not in FINISHED:
        return None
    incident = Incident.from_json(bytes(state))
    return incident.closed_us or incident.canceled_us or incident.updated_us


def _tombstone(row: Any) -> Tombstone:
    return Tombstone(
        tombstone_id=row.tombstone_id,
        kind=TombstoneKind(row.kind),
        incident_id=row.incident_id,
        rule=row.rule,
        created_us=row.created_us,
        first_position=row.first_position,
        last_position=row.last_position,
        event_count=row.event_count,
        chain_tip=bytes(row.chain_tip),
        detail=orjson.loads(bytes(row.detail)),
        signature=bytes(row.signature),
    )


class SqlRetentionStore:
    """:class:`incidents.retention.ports.RetentionStore` on SQLite or PostgreSQL."""

    def __init__(
        self,
        engine: Engine,
        backend: Backend,
        reproject: Reproject,
    ) -> None:
        self._engine = engine
        self._backend = backend
        # An erasure rewrites the incident's projections in its own transaction, so no
        # read ever sees the erased value once the erasure is committed.
        self._reproject = reproject

    # --- reads ---

    def candidates(self) -> list[Candidate]:
        with self._engine.connect() as conn:
            return self._candidates(conn, None)

    def candidate(self, incident_id: str) -> Candidate | None:
        with self._engine.connect() as conn:
            found = self._candidates(conn, incident_id)
        return found[0] if found else None

    def _candidates(self, conn: Connection, incident_id: str | None) -> list[Candidate]:
        purged = (
            select(
                _s.incident_id,
                func.max(_s.last_position).label("purged_to"),
            )
            .where(_s.kind == TombstoneKind.PURGE.value)
            .group_by(_s.incident_id)
            .subquery()
        )
        archived = (
            select(
                _a.incident_id,
                func.max(_a.last_time_us).label("last_time_us"),
            )
            .group_by(_a.incident_id)
            .subquery()
        )
        stmt = (
            select(
                chain_heads.c.chain_key,
                chain_heads.c.last_position,
                chain_heads.c.event_count,
                incidents.c.status,
                incidents.c.state,
                _t.time_us,
                _t.type,
                archived.c.last_time_us,
                purged.c.purged_to,
            )
            .select_from(chain_heads)
            .outerjoin(incidents, incidents.c.incident_id == chain_heads.c.chain_key)
            .outerjoin(timeline_events, _t.position == chain_heads.c.last_position)
            .outerjoin(archived, archived.c.incident_id == chain_heads.c.chain_key)
            .outerjoin(purged, purged.c.incident_id == chain_heads.c.chain_key)
            .where(chain_heads.c.chain_key != "")
        )
        if incident_id is not None:
            stmt = stmt.where(chain_heads.c.chain_key == incident_id)
        held = self._held(conn, incident_id)
        out: list[Candidate] = []
        for row in conn.execute(stmt):
            key, last_position, count, status, state, live_us, last_type, archived_us, purged_to = (
                row
            )
            if purged_to is not None and purged_to >= last_position:
                continue  # nothing of it is stored any more
            if status is None and last_type in HOLD_TYPES:
                # A hold or its release is not activity: the chain ages from the last
                # event before it.
                live_us = conn.execute(
                    select(func.max(_t.time_us)).where(
                        _t.incident_id == key, _t.type.not_in(HOLD_TYPES)
                    )
                ).scalar_one()
            finished = (
                _finished(status, state)
                if status is not None
                else (live_us if live_us is not None else archived_us)
            )
            out.append(
                Candidate(
                    incident_id=key,
                    status=status,
                    finished_us=finished,
                    held=key in held,
                    archived=archived_us is not None,
                    events=int(count),
                )
            )
        return out

    def _hold_rows(self, conn: Connection, incident_id: str | None) -> Iterator[Any]:
        # Written as the partial index's predicate, so the index serves it.
        stmt = select(_t.incident_id, _t.type, _t.position, _t.actor, _t.time_us, _t.body).where(
            _t.type.in_(HOLD_TYPES)
        )
        if incident_id is not None:
            stmt = stmt.where(_t.incident_id == incident_id)
        yield from conn.execute(stmt.order_by(_t.incident_id, _t.position))

    def _current_holds(self, conn: Connection, incident_id: str | None) -> dict[str, Hold]:
        last: dict[str, Any] = {}
        for row in self._hold_rows(conn, incident_id):
            last[row.incident_id] = row
        out: dict[str, Hold] = {}
        for key, row in last.items():
            if row.type != PLACE:
                continue
            data = orjson.loads(bytes(row.body)).get("data") or {}
            reason = data.get("reason", "") if isinstance(data, dict) else ""
            out[key] = Hold(key, str(reason), row.actor, row.time_us, row.position)
        return out

    def _held(self, conn: Connection, incident_id: str | None) -> set[str]:
        return set(self._current_holds(conn, incident_id))

    def holds(self) -> list[Hold]:
        with self._engine.connect() as conn:
            return sorted(self._current_holds(conn, None).values(), key=lambda h: h.incident_id)

    def hold(self, incident_id: str) -> Hold | None:
        with self._engine.connect() as conn:
            return self._current_holds(conn, incident_id).get(incident_id)

    def archived_among(self, incident_ids: Collection[str]) -> set[str]:
        if not incident_ids:
            return set()
        stmt = select(_a.incident_id).where(_a.incident_id.in_(sorted(incident_ids))).distinct()
        with self._engine.connect() as conn:
            return {row[0] for row in conn.execute(stmt)}

    def archived_keys(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        _k = archived_dedupe_keys.c
        by_source: dict[str, list[str]] = {}
        for source, dedupe_id in sorted(set(keys)):
            by_source.setdefault(source, []).append(dedupe_id)
        found: set[tuple[str, str]] = set()
        with self._engine.connect() as conn:
            # Per source, ids in chunks: the primary key (source, dedupe_id) serves it.
            for source, ids in by_source.items():
                for start in range(0, len(ids), 500):
                    stmt = select(_k.dedupe_id).where(
                        _k.source == source, _k.dedupe_id.in_(ids[start : start + 500])
                    )
                    found.update((source, row[0]) for row in conn.execute(stmt))
        return found

    def is_archived(self, incident_id: str) -> bool:
        stmt = select(_a.seq).where(_a.incident_id == incident_id).limit(1)
        with self._engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    def tombstones(self, incident_id: str) -> list[Tombstone]:
        stmt = (
            select(retention_tombstones)
            .where(_s.incident_id == incident_id)
            .order_by(_s.first_position, _s.created_us)
        )
        with self._engine.connect() as conn:
            return [_tombstone(row) for row in conn.execute(stmt)]

    def archived_rows(self, incident_id: str) -> list[StoredEvent]:
        """Every archived event of the incident, in position order."""
        with self._engine.connect() as conn:
            return self._archived_in(conn, incident_id)

    # --- changes, each under the log lock ---

    def _lock(self, conn: Connection) -> None:
        # SQLite: writes(engine).begin() issued BEGIN IMMEDIATE, the write lock itself.
        if self._backend is Backend.POSTGRESQL:
            conn.execute(select(log_head.c.position).where(log_head.c.id == 1).with_for_update())

    def _still_due(self, conn: Connection, incident_id: str, due: StillDue) -> bool:
        fresh = self._candidates(conn, incident_id)
        return bool(fresh) and due(fresh[0])

    def _live_rows(self, conn: Connection, incident_id: str) -> list[StoredEvent]:
        stmt = select(*_COLUMNS).where(_t.incident_id == incident_id).order_by(_t.position)
        return [StoredEvent(*row) for row in conn.execute(stmt)]

    def archive(self, incident_id: str, rule: str, now_us: int, due: StillDue) -> int:
        with writes(self._engine).begin() as conn:
            self._lock(conn)
            if not self._still_due(conn, incident_id, due):
                return 0
            rows = self._live_rows(conn, incident_id)
            if not rows:
                return 0
            seq = conn.execute(
                select(func.coalesce(func.max(_a.seq), -1)).where(_a.incident_id == incident_id)
            ).scalar_one()
            chunks = []
            for start in range(0, len(rows), CHUNK_EVENTS):
                part = rows[start : start + CHUNK_EVENTS]
                seq += 1
                chunks.append(
                    {
                        "incident_id": incident_id,
                        "seq": seq,
                        "first_position": part[0].position,
                        "last_position": part[-1].position,
                        "events": len(part),
                        "archived_us": now_us,
                        "last_time_us": max(r.time_us for r in part),
                        "rule": rule,
                        "data": encode_chunk(part),
                    }
                )
            conn.execute(insert(archived_events), chunks)
            conn.execute(
                insert(archived_event_ids),
                [
                    {"event_id": r.event_id, "source": r.source, "incident_id": incident_id}
                    for r in rows
                ],
            )
            self._record_dedupe_keys(conn, incident_id, rows)
            # The triggers let these rows go because the chunks above now cover them.
            conn.execute(
                delete(timeline_events).where(
                    _t.incident_id == incident_id, _t.position <= rows[-1].position
                )
            )
            return len(rows)

    def _record_dedupe_keys(
        self, conn: Connection, incident_id: str, rows: Sequence[StoredEvent]
    ) -> None:
        """Record the archived events' dedupe keys. A key already recorded stays as it
        is: databases written before keys were kept may hold one key in two archives (or
        archived and live), and the first recorded answers for it."""
        keys = {
            (r.source, dedupe_id_of(r.origin_id, r.event_id)): {
                "source": r.source,
                "dedupe_id": dedupe_id_of(r.origin_id, r.event_id),
                "event_id": r.event_id,
                "incident_id": incident_id,
                "content_hash": r.content_hash,
                "recorded_by": r.recorded_by,
                "visibility": r.visibility,
            }
            for r in rows
        }
        dialect = postgresql if self._backend is Backend.POSTGRESQL else sqlite
        conn.execute(
            dialect.insert(archived_dedupe_keys).on_conflict_do_nothing(), list(keys.values())
        )

    def purge(
        self, incident_id: str, rule: str, now_us: int, due: StillDue, sign: Sign
    ) -> Tombstone | None:
        with writes(self._engine).begin() as conn:
            self._lock(conn)
            if not self._still_due(conn, incident_id, due):
                return None
            head = conn.execute(
                select(
                    chain_heads.c.last_position,
                    chain_heads.c.last_hash,
                    chain_heads.c.event_count,
                ).where(chain_heads.c.chain_key == incident_id)
            ).one()
            previous = self._tombstones(conn, incident_id)
            already = sum(t.event_count for t in previous if t.kind is TombstoneKind.PURGE)
            purged_to = max(
                (t.last_position for t in previous if t.kind is TombstoneKind.PURGE), default=0
            )
            live = conn.execute(
                select(func.count(), func.min(_t.position)).where(_t.incident_id == incident_id)
            ).one()
            kept = conn.execute(
                select(func.coalesce(func.sum(_a.events), 0), func.min(_a.first_position)).where(
                    _a.incident_id == incident_id
                )
            ).one()
            stored = int(live[0]) + int(kept[0])
            expected = int(head.event_count) - already
            if stored != expected:
                # Never cover with a tombstone what cannot be accounted for.
                raise RetentionConflict(
                    f"{incident_id}: the chain head records {expected} events but {stored} "
                    "are stored; run `incidents timeline verify` before purging"
                )
            firsts = [p for p in (live[1], kept[1]) if p is not None]
            first = min(firsts) if firsts else purged_to + 1
            stone = Tombstone(
                tombstone_id=str(uuid.uuid4()),
                kind=TombstoneKind.PURGE,
                incident_id=incident_id,
                rule=rule,
                created_us=now_us,
                first_position=first,
                last_position=int(head.last_position),
                event_count=stored,
                chain_tip=bytes(head.last_hash),
                detail={},
            )
            stone = _signed(stone, sign)
            self._insert_tombstone(conn, stone)
            last = stone.last_position
            conn.execute(
                delete(timeline_events).where(_t.incident_id == incident_id, _t.position <= last)
            )
            conn.execute(delete(archived_events).where(_a.incident_id == incident_id))
            conn.execute(
                delete(archived_event_ids).where(archived_event_ids.c.incident_id == incident_id)
            )
            # A purged event is gone, its key with it: the same key may be stored again.
            conn.execute(
                delete(archived_dedupe_keys).where(
                    archived_dedupe_keys.c.incident_id == incident_id
                )
            )
            # The incident's records go with its events; pending outbox rows could no
            # longer be rendered.
            conn.execute(delete(incidents).where(incidents.c.incident_id == incident_id))
            conn.execute(
                delete(incident_labels).where(incident_labels.c.incident_id == incident_id)
            )
            conn.execute(delete(alerts).where(alerts.c.incident_id == incident_id))
            conn.execute(
                delete(correlation_groups).where(correlation_groups.c.incident_id == incident_id)
            )
            conn.execute(delete(boards).where(boards.c.incident_id == incident_id))
            # Links to its tickets and its chat channel: nothing may map to it any more
            # (the ticket and the channel themselves stay with their vendors).
            for linked in (sync_links, sync_conflicts, chat_channels):
                conn.execute(delete(linked).where(linked.c.incident_id == incident_id))
            conn.execute(
                delete(outbox).where(
                    outbox.c.aggregate_id == incident_id, outbox.c.position <= last
                )
            )
            return stone

    # --- events of no incident ---

    def _due_prefix(
        self, conn: Connection, cutoff_us: int, after: int, limit: int
    ) -> tuple[list[Any], bool]:
        """The due events of no incident after ``after`` (up to ``limit``), from the start
        of their chain in position order: (position, hash) rows, and whether the walk
        reached an event that is not due (the chain must be cut there, not beyond)."""
        # Aged by when the server stored them (``created_us``), never by the ``time``
        # the sender claimed: a claimed future would stop the walk for good, a claimed
        # past would purge early.
        rows = conn.execute(
            select(_t.position, _t.prev_hash, _t.hash, _t.created_us)
            .where(_t.incident_id.is_(None), _t.position > after)
            .order_by(_t.position)
            .limit(limit)
        ).all()
        due: list[Any] = []
        for row in rows:
            if row.created_us >= cutoff_us:
                return due, True
            due.append(row)
        return due, len(rows) < limit

    def unattached_due(self, cutoff_us: int) -> tuple[int, int | None]:
        count, through, after = 0, None, 0
        with self._engine.connect() as conn:
            while True:
                due, ended = self._due_prefix(conn, cutoff_us, after, 5000)
                if due:
                    count += len(due)
                    through = after = int(due[-1].position)
                if ended or not due:
                    return count, through

    def purge_unattached(
        self, cutoff_us: int, rule: str, now_us: int, limit: int, sign: Sign
    ) -> Tombstone | None:
        with writes(self._engine).begin() as conn:
            self._lock(conn)
            due, _ended = self._due_prefix(conn, cutoff_us, 0, limit)
            if not due:
                return None
            # Never cover with a tombstone what cannot be accounted for: the batch must
            # continue the chain from the tip of the last purge, event by event. This
            # reads only the batch (a count of the whole chain per batch would hold
            # the log lock through a scan of every event of no incident).
            previous = [
                t for t in self._tombstones(conn, NO_INCIDENT) if t.kind is TombstoneKind.PURGE
            ]
            tip = max(previous, key=lambda t: t.last_position).chain_tip if previous else GENESIS
            for row in due:
                if (row.prev_hash or GENESIS) != tip:
                    raise RetentionConflict(
                        f"the chain of events of no incident does not link at position "
                        f"{row.position}: an event before it is missing or altered; run a "
                        "backup's chain check before purging"
                    )
                tip = bytes(row.hash)
            last = int(due[-1].position)
            stone = _signed(
                Tombstone(
                    tombstone_id=str(uuid.uuid4()),
                    kind=TombstoneKind.PURGE,
                    incident_id=NO_INCIDENT,
                    rule=rule,
                    created_us=now_us,
                    first_position=int(due[0].position),
                    last_position=last,
                    event_count=len(due),
                    chain_tip=bytes(due[-1].hash),
                    detail={"before_us": cutoff_us},
                ),
                sign,
            )
            self._insert_tombstone(conn, stone)
            # The start of the chain: every event of no incident up to ``last`` is due.
            conn.execute(
                delete(timeline_events).where(_t.incident_id.is_(None), _t.position <= last)
            )
            # An alert that never joined an incident has all its events on this chain:
            # once its last one is gone, so is everything it was made of. Both deletes
            # are index ranges (ix_alerts_incident_last, ix_outbox_aggregate_position):
            # what earlier batches covered is gone, so they touch this batch's rows only.
            conn.execute(
                delete(alerts).where(alerts.c.incident_id.is_(None), alerts.c.last_position <= last)
            )
            conn.execute(
                delete(outbox).where(outbox.c.aggregate_id.is_(None), outbox.c.position <= last)
            )
            return stone

    def erase(
        self, incident_id: str, position: int, paths: list[str], rule: str, now_us: int, sign: Sign
    ) -> Tombstone:
        with writes(self._engine).begin() as conn:
            self._lock(conn)
            found = conn.execute(
                select(*_COLUMNS).where(_t.position == position, _t.incident_id == incident_id)
            ).first()
            if found is None:
                archived = conn.execute(
                    select(_a.seq).where(
                        _a.incident_id == incident_id,
                        _a.first_position <= position,
                        _a.last_position >= position,
                    )
                ).first()
                if archived is not None:
                    raise RetentionConflict(
                        f"{incident_id}: the event at position {position} is archived; "
                        "archived events are read-only"
                    )
                raise ErasureError(f"{incident_id} has no stored event at position {position}")
            row = StoredEvent(*found)
            check_erasable(row.type, paths)
            earlier = [
                t
                for t in self._tombstones(conn, incident_id)
                if t.kind is TombstoneKind.ERASURE and t.first_position == position
            ]
            original = (
                bytes.fromhex(earlier[-1].detail["original_digest"])
                if earlier
                else row_digest(row[1:16])
            )
            erased_row = row._replace(body=erase_fields(bytes(row.body), paths))
            fields = sorted({*paths, *(f for t in earlier for f in t.detail.get("fields", []))})
            stone = Tombstone(
                tombstone_id=str(uuid.uuid4()),
                kind=TombstoneKind.ERASURE,
                incident_id=incident_id,
                rule=rule,
                created_us=now_us,
                first_position=position,
                last_position=position,
                event_count=1,
                chain_tip=bytes(row.hash),
                detail={
                    "event_id": row.event_id,
                    "fields": fields,
                    "original_digest": original.hex(),
                    "erased_digest": row_digest(erased_row[1:16]).hex(),
                },
            )
            stone = _signed(stone, sign)
            self._insert_tombstone(conn, stone)
            conn.execute(
                update(timeline_events).where(_t.position == position).values(body=erased_row.body)
            )
            chain = [*self._archived_in(conn, incident_id), *self._live_rows(conn, incident_id)]
            self._reproject(self._projection_rows(conn), incident_id, chain)
            return stone

    def _archived_in(self, conn: Connection, incident_id: str) -> list[StoredEvent]:
        stmt = select(_a.data).where(_a.incident_id == incident_id).order_by(_a.seq)
        return [row for blob in conn.execute(stmt) for row in decode_chunk(bytes(blob[0]))]

    def _projection_rows(self, conn: Connection) -> ProjectionRows:
        """The projection rows of this transaction, on its own DB-API connection."""
        raw: Any = conn.connection.driver_connection
        if self._backend is Backend.POSTGRESQL:
            cursor = raw.cursor()
            return ProjectionStore(lambda: cursor, "%s", postgresql=True)
        return ProjectionStore(raw.cursor, "?")

    def _tombstones(self, conn: Connection, incident_id: str) -> list[Tombstone]:
        stmt = (
            select(retention_tombstones)
            .where(_s.incident_id == incident_id)
            .order_by(_s.first_position, _s.created_us)
        )
        return [_tombstone(row) for row in conn.execute(stmt)]

    def _insert_tombstone(self, conn: Connection, stone: Tombstone) -> None:
        conn.execute(
            insert(retention_tombstones).values(
                tombstone_id=stone.tombstone_id,
                kind=stone.kind.value,
                incident_id=stone.incident_id,
                rule=stone.rule,
                created_us=stone.created_us,
                first_position=stone.first_position,
                last_position=stone.last_position,
                event_count=stone.event_count,
                chain_tip=stone.chain_tip,
                detail=orjson.dumps(stone.detail, option=orjson.OPT_SORT_KEYS),
                signature=stone.signature,
            )
        )


def _signed(stone: Tombstone, sign: Sign) -> Tombstone:
    return replace(stone, signature=sign(stone))
