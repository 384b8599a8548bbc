"""The Slack outbox destination: incident channels and updates, after the commit.

Channels are created here, by the relay, never inside a request: a declare commits,
its outbox row comes due, and this destination creates ``#inc-<n>-sev<level>-<slug>``,
sets its topic, pins the links and invites the commander and the configured roles.
Later changes keep the topic current and are posted, rendered for the channel's
audience. Delivery is at least once, so every step is safe to repeat: the channel is
found in the record (or, after ``name_taken``, by name) instead of created twice, and
an event already posted is not posted again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson

from incidents.chatops.channels import IncidentChannel
from incidents.chatops.naming import channel_name
from incidents.chatops.port import Channel, ChannelNameTaken, ChatError, ChatPort
from incidents.chatops.render import (
    POSTED_PREFIXES,
    audience,
    message_text,
    posts,
    topic,
    withheld_topic,
)
from incidents.incident.aggregate import Incident
from incidents.integrations.provider import ChatContext
from incidents.integrations.slack.config import SlackConnector
from incidents.log.records import StoredEvent
from incidents.policy.model import Decision
from incidents.store.outbox_store import OutboxRecord

log = logging.getLogger(__name__)

# Events that change what the topic shows.
_TOPIC_TYPES = (
    "im.incident.declare",
    "im.incident.update",
    "im.incident.escalate",
    "im.incident.role.assign",
    "im.incident.mitigate",
    "im.incident.resolve",
    "im.incident.close",
    "im.incident.cancel",
    "im.incident.reopen",
    "im.incident.state_change",
)
_FINAL = ("closed", "canceled")
# How many other names are tried when the natural one is held by another incident's
# channel (or an archived one).
_MAX_SUFFIX = 20


class SlackDestination:
    """Delivers outbox rows to one Slack workspace (``destination = "slack:<name>"``)."""

    def __init__(self, connector: SlackConnector, chat: ChatPort, context: ChatContext) -> None:
        self.name = connector.destination
        self._connector = connector
        self._chat = chat
        self._context = context

    def deliver(self, rows: Sequence[OutboxRecord]) -> list[Exception | None]:
        results: list[Exception | None] = []
        for row in rows:
            try:
                self._deliver(row)
                results.append(None)
            except Exception as exc:
                # One row's failure (Slack, the policy service, the database) is that
                # row's alone: it is retried later, the others are delivered now.
                results.append(exc)
        return results

    def _deliver(self, row: OutboxRecord) -> None:
        if not row.event_id or row.aggregate_id is None:
            return
        if not row.event_type.startswith(POSTED_PREFIXES):
            return
        incident = self._context.incidents.get(row.aggregate_id)
        if incident is None:
            return
        if (
            incident.status in _FINAL
            and self._context.channels.by_incident(self.name, incident.id) is None
        ):
            # Over before it had a channel (declared before Slack was configured, or its
            # rows delivered late): nobody needs a room for it now.
            return
        channel = self.ensure_channel(incident)
        if self._context.channels.delivered(self.name, row.event_id):
            return
        decision = self._context.policy.decide_for(
            audience(self.name, channel, incident.classification)
        )
        stored = self._stored(row)
        if stored is not None and posts(stored):
            text = message_text(stored, decision)
            if text is not None:
                self._chat.post(channel.channel_id, text)
        if row.event_type in _TOPIC_TYPES:
            self._chat.set_topic(channel.channel_id, self._topic(incident, decision))
        if row.event_type == "im.incident.role.assign":
            self._invite_commander(channel, incident)
        self._context.channels.mark_delivered(self.name, row.event_id)

    def _stored(self, row: OutboxRecord) -> StoredEvent | None:
        source = _source_of(row.payload)
        for stored in self._context.events.by_event_id(row.event_id, source):
            if stored.position == row.position:
                return stored
        return None

    def _topic(self, incident: Incident, decision: Decision | None = None) -> str:
        base = self._connector.app_url
        if decision is not None and incident.classification not in decision.visibilities:
            # Reclassified above the channel's audience: the topic keeps nothing of it.
            return withheld_topic(incident.id, f"{base}/api/v1/incidents/{incident.id}")
        commander = None
        if incident.commander:
            user = self._chat.user_id_by_email(incident.commander)
            commander = f"<@{user}>" if user else incident.commander
        return topic(
            incident,
            commander,
            f"{base}/api/v1/incidents/{incident.id}",
            f"{base}/api/v1/incidents/{incident.id}/timeline",
        )

    def ensure_channel(self, incident: Incident) -> IncidentChannel:
        """The incident's channel, created and set up (once) if it has none yet.

        Each step is recorded before the next, so a delivery that fails half-way and
        is retried neither creates a second channel nor posts the links twice.
        """
        channels = self._context.channels
        setup = f"setup:{incident.id}"
        known = channels.by_incident(self.name, incident.id)
        if known is not None and channels.delivered(self.name, setup):
            return known
        if known is None:
            created = self._create(incident)
            known = channels.save(
                IncidentChannel(self.name, incident.id, created.id, created.name, created.private)
            )
        if known.pinned_ts is None:
            links = (
                f"*{incident.id}* links: status board {self._connector.app_url}/api/v1/"
                f"incidents/{incident.id} | timeline {self._connector.app_url}/api/v1/"
                f"incidents/{incident.id}/timeline"
            )
            ts = self._chat.post(known.channel_id, links)
            known = channels.save(replace(known, pinned_ts=ts))
        assert known.pinned_ts is not None
        self._chat.pin(known.channel_id, known.pinned_ts)
        self._chat.set_topic(known.channel_id, self._topic(incident))
        self._invite(known, incident)
        channels.mark_delivered(self.name, setup)
        return known

    def _create(self, incident: Incident) -> Channel:
        private = incident.classification != "public"
        for attempt in range(_MAX_SUFFIX):
            name = channel_name(
                incident.id,
                incident.severity,
                incident.title,
                restricted=private,
                suffix=str(attempt + 1) if attempt else "",
            )
            try:
                return self._chat.create_channel(name, private=private)
            except ChannelNameTaken:
                # Our own earlier attempt (a retry after a lost answer) or a channel
                # someone else made: adopt it unless another incident has it.
                found = self._chat.find_channel(name)
                if found is None:
                    continue  # archived: not listed, its name stays taken
                owner = self._context.channels.by_channel(self.name, found.id)
                if owner is None or owner.incident_id == incident.id:
                    return found
        raise ChatError(f"no free channel name for {incident.id} after {_MAX_SUFFIX} tries")

    def _invite(self, channel: IncidentChannel, incident: Incident) -> None:
        emails: list[str] = []
        if incident.commander:
            emails.append(incident.commander)
        if self._connector.invite_roles:
            emails.extend(self._holders(self._connector.invite_roles))
        ids = [self._chat.user_id_by_email(e) for e in dict.fromkeys(emails)]
        self._chat.invite(channel.channel_id, [i for i in ids if i])

    def _invite_commander(self, channel: IncidentChannel, incident: Incident) -> None:
        if incident.commander:
            user = self._chat.user_id_by_email(incident.commander)
            if user:
                self._chat.invite(channel.channel_id, [user])

    def _holders(self, roles: Sequence[str]) -> list[str]:
        directory = self._context.directory
        wanted = set(roles)
        found: list[str] = []
        start = 1
        while True:
            total, users = directory.list_users(start=start, count=200)
            for user in users:
                if not user.active:
                    continue
                subject = directory.subject_for(user.email)
                if subject is not None and wanted & subject.roles:
                    found.append(user.email)
            start += len(users)
            if not users or start > total:
                return found


def _source_of(payload: bytes) -> str | None:
    try:
        document: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    source = document.get("source") if isinstance(document, dict) else None
    return source if isinstance(source, str) else None
