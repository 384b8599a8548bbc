"""The relational schema, as SQLAlchemy Core tables shared by both backends.

Timestamps are integer microseconds since the epoch (UTC): portable between SQLite
and PostgreSQL, compact, and ordered exactly.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    false,
    func,
)

metadata = MetaData()

timeline_events = Table(
    "timeline_events",
    metadata,
    # Global log position: assigned in commit order, so it only ever grows.
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("incident_id", String, nullable=True),
    Column("event_id", String, nullable=False),
    Column("source", String, nullable=False),
    Column("type", String, nullable=False),
    Column("subject", String, nullable=True),
    Column("time_us", BigInteger, nullable=False),
    Column("origin_id", String, nullable=True),
    Column("actor", String, nullable=False),
    Column("recorded_by", String, nullable=False),
    Column("visibility", String, nullable=True),
    Column("correlation_key", String, nullable=True),
    Column("fingerprint", String, nullable=True),
    Column("created_us", BigInteger, nullable=False),
    # data, data_base64, datacontenttype, dataschema, data_class, related_ids, other extensions.
    Column("body", LargeBinary, nullable=False),
    Column("content_hash", LargeBinary, nullable=False),
    Column("prev_hash", LargeBinary, nullable=True),
    Column("hash", LargeBinary, nullable=False),
)

Index(
    "uq_timeline_events_dedupe",
    timeline_events.c.source,
    func.coalesce(timeline_events.c.origin_id, timeline_events.c.event_id),
    unique=True,
)
Index(
    "ix_timeline_events_incident_time",
    timeline_events.c.incident_id,
    timeline_events.c.time_us,
    timeline_events.c.position,
)
Index(
    "ix_timeline_events_incident_position",
    timeline_events.c.incident_id,
    timeline_events.c.position,
)
Index("ix_timeline_events_event_id", timeline_events.c.event_id)

# One row: the highest position handed out. Writers lock it, which orders commits.
log_head = Table(
    "log_head",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False),
)

# The tip of each incident's hash chain ('' chains events that name no incident).
chain_heads = Table(
    "chain_heads",
    metadata,
    Column("chain_key", String, primary_key=True),
    Column("last_position", BigInteger, nullable=False),
    Column("last_hash", LargeBinary, nullable=False),
    Column("event_count", BigInteger, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String, primary_key=True),
    Column("subject", String, nullable=False),
    Column("name", String, nullable=True),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    Column("created_us", BigInteger, nullable=False),
    Column("revoked_us", BigInteger, nullable=True),
)

# Secrets the platform generates for itself, shared by every instance on one database.
instance_secrets = Table(
    "instance_secrets",
    metadata,
    Column("name", String, primary_key=True),
    Column("value", LargeBinary, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("user_id", String, primary_key=True),
    Column("email", String, nullable=False, unique=True),
    Column("display_name", String, nullable=True),
    Column("external_id", String, nullable=True),
    Column("active", Boolean, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
)

groups = Table(
    "groups",
    metadata,
    Column("group_id", String, primary_key=True),
    Column("name", String, nullable=False, unique=True),
    Column("external_id", String, nullable=True),
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_id", String, primary_key=True),
    Column("user_id", String, primary_key=True),
)
Index("ix_group_members_user", group_members.c.user_id)

# What a user or group is granted: kind is role, attribute or clearance.
grants = Table(
    "grants",
    metadata,
    Column("principal_type", String, primary_key=True),
    Column("principal_id", String, primary_key=True),
    Column("kind", String, primary_key=True),
    Column("value", String, primary_key=True),
)

# --- Projections: rebuilt from the log by `incidents admin rebuild-projections`. ---

# One row per incident; `state` holds the whole aggregate, the other columns are the
# ones lists filter and sort on.
incidents = Table(
    "incidents",
    metadata,
    Column("incident_id", String, primary_key=True),
    Column("number", BigInteger, nullable=True),
    Column("title", String, nullable=False),
    Column("title_lower", String, nullable=False),
    Column("status", String, nullable=False),
    Column("severity", String, nullable=False),
    Column("service", String, nullable=True),
    Column("commander", String, nullable=True),
    Column("classification", String, nullable=False),
    Column("parent_id", String, nullable=True),
    Column("declared_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    Column("state", LargeBinary, nullable=False),
)
Index("ix_incidents_status_declared", incidents.c.status, incidents.c.declared_us)
Index("ix_incidents_declared", incidents.c.declared_us, incidents.c.incident_id)
Index("ix_incidents_parent", incidents.c.parent_id)

incident_labels = Table(
    "incident_labels",
    metadata,
    Column("incident_id", String, primary_key=True),
    # "key=value" (or "key" for a bare label): what ?label= matches exactly.
    Column("label", String, primary_key=True),
)
Index("ix_incident_labels_label", incident_labels.c.label)

# One row per alert (a provider's alert series), wherever it is attached.
alerts = Table(
    "alerts",
    metadata,
    Column("alert_key", String, primary_key=True),
    Column("incident_id", String, nullable=True),
    Column("status", String, nullable=False),
    Column("provider", String, nullable=False),
    Column("severity", String, nullable=True),
    Column("summary", String, nullable=True),
    Column("first_us", BigInteger, nullable=False),
    Column("last_us", BigInteger, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    Column("state", LargeBinary, nullable=False),
)
Index("ix_alerts_incident", alerts.c.incident_id, alerts.c.status)
Index("ix_alerts_status_last", alerts.c.status, alerts.c.last_us)
# Purges delete the alerts whose last event they removed.
Index("ix_alerts_incident_last", alerts.c.incident_id, alerts.c.last_position)

# Which incident a correlation fingerprint currently groups into, and for how long.
correlation_groups = Table(
    "correlation_groups",
    metadata,
    Column("group_key", String, primary_key=True),
    Column("incident_id", String, nullable=False),
    Column("rule", String, nullable=False),
    Column("opened_us", BigInteger, nullable=False),
    Column("last_us", BigInteger, nullable=False),
)
Index("ix_correlation_groups_incident", correlation_groups.c.incident_id)

# One row per incident: its status board (incidents.boards.state.BoardState as JSON).
boards = Table(
    "boards",
    metadata,
    Column("incident_id", String, primary_key=True),
    Column("last_position", BigInteger, nullable=False),
    Column("state", LargeBinary, nullable=False),
)

# Counters the projections keep (the highest INC-n seen, the last folded position).
projection_meta = Table(
    "projection_meta",
    metadata,
    Column("name", String, primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# --- The transactional outbox: written with the events, drained by the relay. ---

# One row per created event and destination. SQLite only auto-numbers an INTEGER
# PRIMARY KEY (the rowid), hence the variant.
outbox = Table(
    "outbox",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("position", BigInteger, nullable=False),
    Column("aggregate_id", String, nullable=True),
    Column("event_type", String, nullable=False),
    # Empty: the relay renders the event at ``position`` when it delivers (a copy
    # here doubled what every append wrote). Rows from before revision 0005 carry
    # the structured-mode CloudEvent.
    Column("payload", LargeBinary, nullable=True),
    Column("destination", String, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", String, nullable=True),
    Column("processed_us", BigInteger, nullable=True),
    # Dead-lettered: attempts ran out; only `incidents admin outbox retry` revives it.
    Column("dead_us", BigInteger, nullable=True),
)
# The relay's claim: pending rows, earliest due first. Partial, so it stays as small
# as the backlog however long processed rows are kept.
Index(
    "ix_outbox_pending",
    outbox.c.next_attempt_us,
    outbox.c.id,
    postgresql_where=outbox.c.processed_us.is_(None) & outbox.c.dead_us.is_(None),
    sqlite_where=outbox.c.processed_us.is_(None) & outbox.c.dead_us.is_(None),
)
Index("ix_outbox_processed", outbox.c.processed_us)
# Purges delete the rows of the events they removed.
Index("ix_outbox_aggregate_position", outbox.c.aggregate_id, outbox.c.position)

# --- Retention: signed tombstones and the compressed archive. ---

# One row per purge (the events of an incident up to a chain tip, removed) or field
# erasure (fields of one event's body replaced). Signed with an instance secret; the
# append-only triggers let a row of timeline_events go only when a tombstone (or an
# archive chunk) covers it.
retention_tombstones = Table(
    "retention_tombstones",
    metadata,
    Column("tombstone_id", String, primary_key=True),
    Column("kind", String, nullable=False),
    Column("incident_id", String, nullable=False),
    Column("rule", String, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("first_position", BigInteger, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    Column("event_count", BigInteger, nullable=False),
    Column("chain_tip", LargeBinary, nullable=False),
    # JSON: what the signature covers beyond the columns (erased fields and digests).
    Column("detail", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
)
Index(
    "ix_retention_tombstones_incident",
    retention_tombstones.c.incident_id,
    retention_tombstones.c.first_position,
)

# Archived incidents' events: stored rows in compressed chunks, in position order.
archived_events = Table(
    "archived_events",
    metadata,
    Column("incident_id", String, primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("first_position", BigInteger, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    Column("events", Integer, nullable=False),
    Column("archived_us", BigInteger, nullable=False),
    # The time of the chunk's last event: how an archived chain without an incident
    # record keeps its age.
    Column("last_time_us", BigInteger, nullable=False),
    Column("rule", String, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

# Which archived incident holds an event id: lookups by id (GET /timeline/events/{id})
# still find archived events.
archived_event_ids = Table(
    "archived_event_ids",
    metadata,
    Column("event_id", String, primary_key=True),
    Column("source", String, primary_key=True),
    Column("incident_id", String, nullable=False),
)
Index("ix_archived_event_ids_incident", archived_event_ids.c.incident_id)

# The dedupe keys of archived events, with what an append answers a re-delivery with:
# an event sent again after its incident was archived is still a duplicate. Keyed as
# the live table's unique index is (source, origin id or else event id).
archived_dedupe_keys = Table(
    "archived_dedupe_keys",
    metadata,
    Column("source", String, primary_key=True),
    Column("dedupe_id", String, primary_key=True),
    Column("event_id", String, nullable=False),
    Column("incident_id", String, nullable=False),
    Column("content_hash", LargeBinary, nullable=False),
    Column("recorded_by", String, nullable=False),
    Column("visibility", String, nullable=True),
)
Index("ix_archived_dedupe_keys_incident", archived_dedupe_keys.c.incident_id)

# --- ITSM sync (incidents.sync): links to tickets, the write ledger, conflicts, polls. ---

# An incident linked to a ticket of one connector ("servicenow:prod"). A row with an
# empty external_id records a create before the vendor call (never a second ticket).
sync_links = Table(
    "sync_links",
    metadata,
    Column("connector", String, primary_key=True),
    Column("incident_id", String, primary_key=True),
    Column("external_id", String, nullable=False, server_default=""),
    Column("external_key", String, nullable=False, server_default=""),
    Column("url", String, nullable=True),
    # JSON: the last synced value of each mapped field (internal form).
    Column("base", String, nullable=False, server_default="{}"),
    Column("seen_version", BigInteger, nullable=False, server_default="-1"),
    Column("written_version", BigInteger, nullable=False, server_default="-1"),
    Column("created_us", BigInteger, nullable=False),
    Column("synced_us", BigInteger, nullable=False, server_default="0"),
    # Whether the link's ``...:linked`` event is on the timeline (revision 0015).
    Column("recorded", Boolean, nullable=False, server_default=false()),
)
Index("ix_sync_links_external", sync_links.c.connector, sync_links.c.external_id)
Index("ix_sync_links_incident", sync_links.c.incident_id)

# Writes and reads remembered by key: notes sent ("note:<event id>"), ticket comments
# taken or written by us ("comment:<id>").
sync_ledger = Table(
    "sync_ledger",
    metadata,
    Column("connector", String, primary_key=True),
    Column("key", String, primary_key=True),
    Column("created_us", BigInteger, nullable=False),
)

sync_conflicts = Table(
    "sync_conflicts",
    metadata,
    Column("id", String, primary_key=True),
    Column("connector", String, nullable=False),
    Column("incident_id", String, nullable=False),
    Column("field", String, nullable=False),
    Column("ours", String, nullable=True),
    Column("theirs", String, nullable=True),
    Column("base", String, nullable=True),
    Column("reason", String, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("resolved_us", BigInteger, nullable=True),
    Column("resolution", String, nullable=True),
    Column("resolved_value", String, nullable=True),
    Column("resolved_by", String, nullable=True),
)
Index("ix_sync_conflicts_link", sync_conflicts.c.connector, sync_conflicts.c.incident_id)

sync_polls = Table(
    "sync_polls",
    metadata,
    Column("connector", String, primary_key=True),
    Column("cursor_us", BigInteger, nullable=True),
    Column("polled_us", BigInteger, nullable=False),
    Column("last_error", String, nullable=True),
)

# Who polls each connector (revision 0013): one server process at a time holds the
# lease, renews it while it polls, and another takes it over once it expires.
sync_poll_leases = Table(
    "sync_poll_leases",
    metadata,
    Column("connector", String, primary_key=True),
    Column("holder", String, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
)

# ChatOps: each incident's channel per chat connector (revision 0010). The chat system
# holds the channel; this row is how a command in the channel finds its incident and
# how a redelivered declare finds the channel it created before.
chat_channels = Table(
    "chat_channels",
    metadata,
    Column("connector", String, primary_key=True),
    Column("incident_id", String, primary_key=True),
    Column("channel_id", String, nullable=False),
    Column("name", String, nullable=False),
    Column("private", Boolean, nullable=False),
    Column("pinned_ts", String, nullable=True),
    Column("created_us", BigInteger, nullable=False),
    Index("uq_chat_channels_channel", "connector", "channel_id", unique=True),
)

# Events already posted to chat, so that a redelivered outbox row posts nothing twice.
chat_deliveries = Table(
    "chat_deliveries",
    metadata,
    Column("connector", String, primary_key=True),
    Column("event_id", String, primary_key=True),
    Column("delivered_us", BigInteger, nullable=False),
)
