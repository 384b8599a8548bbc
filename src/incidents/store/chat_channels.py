"""The incident <-> chat channel record and the events already posted, on both backends."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Engine, Row, select
from sqlalchemy.exc import IntegrityError

from incidents.chatops.channels import IncidentChannel
from incidents.events.timeformat import now_micros
from incidents.store.engine import writes
from incidents.store.schema import chat_channels, chat_deliveries

_c = chat_channels.c


def _channel(row: Row[Any, Any, Any, Any, Any, Any]) -> IncidentChannel:
    return IncidentChannel(row[0], row[1], row[2], row[3], bool(row[4]), row[5])


_COLUMNS = (_c.connector, _c.incident_id, _c.channel_id, _c.name, _c.private, _c.pinned_ts)


class ChatChannelStore:
    """Implements :class:`incidents.chatops.channels.ChannelMap` on the database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writes = writes(engine)
        # A channel, once recorded, belongs to its incident for good (rows are never
        # changed but for the pin, which the event paths do not read): every message
        # in a channel asks, so found channels are remembered.
        self._by_channel: dict[tuple[str, str], IncidentChannel] = {}

    def by_incident(self, connector: str, incident_id: str) -> IncidentChannel | None:
        stmt = select(*_COLUMNS).where(_c.connector == connector, _c.incident_id == incident_id)
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        return _channel(row) if row is not None else None

    def by_channel(self, connector: str, channel_id: str) -> IncidentChannel | None:
        known = self._by_channel.get((connector, channel_id))
        if known is not None:
            return known
        stmt = select(*_COLUMNS).where(_c.connector == connector, _c.channel_id == channel_id)
        with self._engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        found = _channel(row)
        if len(self._by_channel) > 10_000:
            self._by_channel.clear()
        self._by_channel[(connector, channel_id)] = found
        return found

    def save(self, channel: IncidentChannel) -> IncidentChannel:
        values = {
            "connector": channel.connector,
            "incident_id": channel.incident_id,
            "channel_id": channel.channel_id,
            "name": channel.name,
            "private": channel.private,
            "pinned_ts": channel.pinned_ts,
            "created_us": now_micros(),
        }
        try:
            with self._writes.begin() as conn:
                existing = conn.execute(
                    select(*_COLUMNS).where(
                        _c.connector == channel.connector, _c.incident_id == channel.incident_id
                    )
                ).first()
                if existing is None:
                    conn.execute(chat_channels.insert().values(**values))
                    return channel
                if existing[5] is None and channel.pinned_ts is not None:
                    conn.execute(
                        chat_channels.update()
                        .where(
                            _c.connector == channel.connector,
                            _c.incident_id == channel.incident_id,
                        )
                        .values(pinned_ts=channel.pinned_ts)
                    )
                    return replace(_channel(existing), pinned_ts=channel.pinned_ts)
                return _channel(existing)
        except IntegrityError:
            # Another relay recorded it in between: theirs stands.
            found = self.by_incident(channel.connector, channel.incident_id)
            if found is None:
                raise
            return found

    def delivered(self, connector: str, event_id: str) -> bool:
        stmt = select(chat_deliveries.c.event_id).where(
            chat_deliveries.c.connector == connector, chat_deliveries.c.event_id == event_id
        )
        with self._engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    def mark_delivered(self, connector: str, event_id: str) -> None:
        try:
            with self._writes.begin() as conn:
                conn.execute(
                    chat_deliveries.insert().values(
                        connector=connector, event_id=event_id, delivered_us=now_micros()
                    )
                )
        except IntegrityError:
            pass
