"""The composition root: builds every adapter once and wires them together.

Nothing else in the package holds process-wide state or builds adapters; entrypoints
(the HTTP app, the CLI's local admin commands, the worker, tests, benchmarks) get what
they need from a :class:`Container` or from the builders below.
"""

from __future__ import annotations

import gc
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Tracer
from sqlalchemy import Engine

from incidents.bus.destination import BusDestination, Destination
from incidents.bus.jetstream import NatsBus
from incidents.bus.memory import InProcessBus
from incidents.bus.message import Bus
from incidents.bus.relay import OutboxRelay, RetryPolicy
from incidents.config import (
    ConfigError,
    Settings,
    load_settings,
    oidc_enabled,
    outbox_destinations,
)
from incidents.identity.directory import Directory
from incidents.identity.oidc import OidcVerifier
from incidents.identity.tokens import TokenService
from incidents.incident.correlation.routing import correlation_route
from incidents.incident.correlation.rules import CorrelationRules, RulesError, parse_rules
from incidents.incident.projection import incident_projection
from incidents.incident.service import IncidentService
from incidents.integrations.credentials import Integrations, IntegrationsError
from incidents.integrations.provider import ChatContext, Connector, ConnectorRuntime
from incidents.integrations.registry import build_connectors, parse_connectors, parse_integrations
from incidents.log.ports import EventWriter
from incidents.log.projections import Projections
from incidents.log.query import CursorCodec
from incidents.observability.metrics import TimelineMetrics
from incidents.observability.tracing import make_tracer
from incidents.policy.decision_point import (
    DecisionPoint,
    EmbeddedDecisionPoint,
    RemoteDecisionPoint,
)
from incidents.policy.service import PolicyService
from incidents.store.alert_reader import AlertReader
from incidents.store.chat_channels import ChatChannelStore
from incidents.store.engine import Backend, backend_of, make_engine
from incidents.store.event_reader import EventReader
from incidents.store.incident_reader import IncidentReader
from incidents.store.memory_writer import MemoryWriter
from incidents.store.migrate import current_revision, migrate
from incidents.store.outbox_store import OutboxStore
from incidents.store.postgres_writer import PostgresWriter
from incidents.store.sqlite_writer import SqliteWriter
from incidents.timeline.feed import LiveFeed
from incidents.timeline.group_commit import GroupCommitAppender
from incidents.timeline.service import TimelineService

if TYPE_CHECKING:
    from fastapi import FastAPI


@dataclass(frozen=True, slots=True)
class Sections:
    """The structured sections of ``IM_CONFIG``, parsed and checked."""

    rules: CorrelationRules
    integrations: Integrations
    # Chat workspaces (``connectors:``), each with an outbox destination.
    connectors: tuple[Connector, ...] = ()


def parse_sections(settings: Settings) -> Sections:
    """Parse the structured sections; a bad one raises :class:`ConfigError` naming the key."""
    try:
        rules = parse_rules(settings.correlation)
    except RulesError as exc:
        raise ConfigError(f"IM_CONFIG: {exc}") from None
    try:
        integrations = parse_integrations(settings.integrations)
    except IntegrationsError as exc:
        raise ConfigError(f"IM_CONFIG: {exc}") from None
    try:
        connectors = parse_connectors(settings.connectors)
    except IntegrationsError as exc:
        raise ConfigError(f"IM_CONFIG: {exc}") from None
    return Sections(rules, integrations, connectors)


def load_configuration(env: Mapping[str, str] | None = None) -> Settings:
    """The settings from the environment and ``IM_CONFIG``, every section checked
    (what every command and server start reads)."""
    settings = load_settings(env)
    parse_sections(settings)
    return settings


def projections() -> Projections:
    """Every projection an append keeps current (and a rebuild folds again)."""
    return Projections([incident_projection()])


@dataclass(frozen=True, slots=True)
class Database:
    """An engine on the configured database, and whether this opening created it."""

    engine: Engine
    backend: Backend
    # True when the database had no schema before (a new, empty database).
    created: bool


def open_database(settings: Settings, *, apply_migrations: bool = True) -> Database:
    """The configured database with its durability setting, migrated unless told not to."""
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    created = False
    if apply_migrations:
        before, _after = migrate(engine)
        created = before is None
    return Database(engine, backend_of(settings.database_url), created)


def database_revision(settings: Settings) -> str | None:
    """The schema revision of the configured database (None when it has none)."""
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def build_outbox_store(settings: Settings, database: Database) -> OutboxStore:
    """The outbox table, as the relay and ``incidents admin outbox`` use it."""
    return OutboxStore(
        database.engine,
        database.backend,
        settings.outbox_lease_seconds,
        keep_delivered=settings.outbox_retention_seconds > 0,
    )


_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]")


def default_consumer_name(port: int) -> str:
    """This instance's durable consumer name: ``<hostname>-<port>``."""
    return _NOT_IN_NAME.sub("_", f"{socket.gethostname()}-{port}")


def build_bus(settings: Settings, *, consume: bool = True) -> Bus:
    """The bus the settings choose: NATS JetStream when IM_NATS_URL is set, else in-process.

    ``consume=False`` (``incidents worker``) publishes only: no durable consumer.
    """
    if not settings.nats_url:
        return InProcessBus()
    consumer = settings.nats_consumer or default_consumer_name(settings.port)
    return NatsBus(
        settings.nats_url,
        stream=settings.nats_stream,
        subject_prefix=settings.nats_subject_prefix,
        consumer=consumer if consume else None,
        duplicate_window_seconds=settings.nats_duplicate_window_seconds,
    )


def build_destinations(
    settings: Settings, bus: Bus, extra: Sequence[Destination] = ()
) -> list[Destination]:
    """The configured outbox destinations (see IM_OUTBOX_DESTINATIONS), then ``extra``
    (those of the chat connectors)."""
    known: dict[str, Destination] = {"bus": BusDestination(bus)}
    return [known[name] for name in outbox_destinations(settings)] + list(extra)


def destination_names(settings: Settings, sections: Sections) -> list[str]:
    """Every destination an appended event is queued for: the configured ones and one
    per chat connector."""
    return outbox_destinations(settings) + [c.destination for c in sections.connectors]


def build_policy(settings: Settings, directory: Directory, tracer: Tracer) -> PolicyService:
    """The policy decision point the settings choose, behind the policy service."""
    pdp: DecisionPoint = (
        RemoteDecisionPoint(settings.opa_url)
        if settings.opa_url
        else EmbeddedDecisionPoint(Path(settings.policy_dir) if settings.policy_dir else None)
    )
    return PolicyService(directory, pdp, tracer, settings.policy_cache_seconds)


def build_chat(
    sections: Sections,
    engine: Engine,
    policy: PolicyService,
    directory: Directory,
    commands: IncidentService | None,
) -> dict[str, ConnectorRuntime]:
    """Each chat connector (adapter, slash commands, outbox destination), by
    ``<provider>:<name>``."""
    if not sections.connectors:
        return {}
    context = ChatContext(
        policy=policy,
        incidents=IncidentReader(engine),
        events=EventReader(engine),
        directory=directory,
        channels=ChatChannelStore(engine),
        commands=commands,
    )
    return build_connectors(sections.connectors, context)


def build_relay(
    settings: Settings, database: Database, bus: Bus, extra: Sequence[Destination] = ()
) -> OutboxRelay:
    """A relay draining the configured destinations with the configured retry policy."""
    return OutboxRelay(
        build_outbox_store(settings, database),
        build_destinations(settings, bus, extra),
        retry=RetryPolicy(
            max_attempts=settings.outbox_max_attempts,
            base_seconds=settings.outbox_backoff_base_seconds,
            cap_seconds=settings.outbox_backoff_cap_seconds,
        ),
        batch_size=settings.outbox_batch_size,
        poll_seconds=settings.outbox_poll_seconds,
        retention_seconds=settings.outbox_retention_seconds,
    )


@dataclass
class Worker:
    """An outbox relay with its own bus connection (``incidents worker``)."""

    database: Database
    bus: Bus
    relay: OutboxRelay

    def start(self) -> None:
        self.bus.start()
        self.relay.start()

    def close(self) -> None:
        self.relay.stop()
        self.bus.close()
        self.database.engine.dispose()


def build_worker(settings: Settings) -> Worker:
    """A relay delivering the configured destinations; it publishes to the bus only."""
    sections = parse_sections(settings)
    database = open_database(settings)
    bus = build_bus(settings, consume=False)
    chat: list[Destination] = []
    if sections.connectors:
        directory = Directory(database.engine, settings.policy_cache_seconds)
        _, tracer = make_tracer("none")
        policy = build_policy(settings, directory, tracer)
        built = build_chat(sections, database.engine, policy, directory, None)
        chat = [runtime.destination for runtime in built.values()]
    return Worker(database, bus, build_relay(settings, database, bus, chat))


def build_replay_appender() -> tuple[GroupCommitAppender, MemoryWriter]:
    """An appender on an in-memory log with every projection (correlation dry runs)."""
    writer = MemoryWriter()
    return GroupCommitAppender(writer, projection=projections().open), writer


@dataclass
class Container:
    """Everything one process needs, built once."""

    settings: Settings
    engine: Engine
    backend: Backend
    reader: EventReader
    writer: EventWriter
    appender: GroupCommitAppender
    timeline: TimelineService
    tokens: TokenService
    directory: Directory
    policy: PolicyService
    metrics: TimelineMetrics
    tracer: Tracer
    tracer_provider: TracerProvider
    incidents: IncidentService
    # Fans newly committed events out to live streams (SSE, WebSocket).
    feed: LiveFeed
    # Verifies OIDC bearer JWTs; None when OIDC is not configured (API tokens only).
    oidc: OidcVerifier | None = None
    # The alert sources allowed to post to /api/v1/ingest/*, with their credentials.
    integrations: Integrations = field(default_factory=Integrations)
    # Lists alerts (GET /api/v1/alerts); built with the container.
    alerts: AlertReader | None = None
    # The event bus (in-process, or NATS JetStream with IM_NATS_URL): every committed
    # event reaches it through the outbox; subscribe to receive them.
    bus: Bus = field(default_factory=InProcessBus)
    # Delivers outbox rows; None when IM_OUTBOX_RELAY is off (`incidents worker` does it).
    relay: OutboxRelay | None = None
    # Chat workspaces (connectors:), by "<provider>:<name>": their routes find them here.
    connectors: dict[str, ConnectorRuntime] = field(default_factory=dict)

    def start(self) -> None:
        """Start background work (the group-commit writer); build projections if new."""
        self.appender.start()
        self.bus.start()
        if self.relay is not None:
            self.relay.start()
        self.incidents.ensure_built()

    def close(self) -> None:
        """Finish queued appends, then release the database."""
        self.appender.stop()
        if self.relay is not None:
            self.relay.stop()
        self.bus.close()
        self.writer.close()
        self.engine.dispose()
        # Flush spans still queued for the exporter.
        self.tracer_provider.shutdown()


def build_container(
    settings: Settings | None = None,
    *,
    apply_migrations: bool = True,
    span_exporter: SpanExporter | None = None,
) -> Container:
    """Build the adapters for ``settings`` (default: from the environment)."""
    settings = settings or load_settings()
    sections = parse_sections(settings)
    database = open_database(settings, apply_migrations=apply_migrations)
    engine, backend = database.engine, database.backend
    writer: EventWriter = (
        SqliteWriter(engine) if backend is Backend.SQLITE else PostgresWriter(engine)
    )
    reader = EventReader(engine)
    registry = projections()
    appender = GroupCommitAppender(
        writer,
        max_events=settings.group_commit_max_events,
        projection=registry.open,
        outbox_destinations=destination_names(settings, sections),
    )
    bus = build_bus(settings)
    # Streams wake on this process's commits, and on events other servers published.
    feed = LiveFeed(reader, settings.stream_poll_seconds)
    appender.on_commit(feed.wake)
    bus.subscribe(lambda _message: feed.wake())
    metrics = TimelineMetrics()
    appender.on_group(metrics.observe_group)
    tracer_provider, tracer = make_tracer(settings.otel_exporter, span_exporter)
    cursors = CursorCodec(reader.instance_secret("cursor-hmac"))
    incidents = IncidentService(
        appender, IncidentReader(engine), reader, sections.rules, cursors, registry
    )
    timeline = TimelineService(reader, appender, cursors, metrics, tracer)
    timeline.route = correlation_route(incidents.rules)
    tokens = TokenService(engine, settings.token_cache_seconds)
    directory = Directory(engine, settings.policy_cache_seconds)
    policy = build_policy(settings, directory, tracer)
    connectors = build_chat(sections, engine, policy, directory, incidents)
    relay = None
    if settings.outbox_relay and destination_names(settings, sections):
        chat = [runtime.destination for runtime in connectors.values()]
        relay = build_relay(settings, database, bus, chat)
        appender.on_commit(relay.notify)
    # A grant, revocation or deletion takes effect at once in this process (other
    # processes within IM_POLICY_CACHE_SECONDS / IM_TOKEN_CACHE_SECONDS).
    directory.on_change(tokens.invalidate)
    directory.on_change(policy.invalidate)
    # Keys are fetched on the first OIDC request, not here: a provider that is down
    # must not stop the server (API tokens keep working).
    oidc = OidcVerifier.from_settings(settings) if oidc_enabled(settings) else None
    return Container(
        settings=settings,
        engine=engine,
        backend=backend,
        reader=reader,
        writer=writer,
        appender=appender,
        timeline=timeline,
        tokens=tokens,
        directory=directory,
        policy=policy,
        metrics=metrics,
        tracer=tracer,
        tracer_provider=tracer_provider,
        incidents=incidents,
        feed=feed,
        oidc=oidc,
        integrations=sections.integrations,
        alerts=AlertReader(engine, cursors),
        bus=bus,
        relay=relay,
        connectors=connectors,
    )


def tune_runtime() -> None:
    """Collect garbage less often in a server process.

    Appending allocates many short-lived objects per event that form no reference
    cycles; CPython's default thresholds (700 allocations) made collection a fifth of
    the validation and row-building time. Objects alive at start are frozen out of the
    collector's scans altogether.
    """
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _build_api(container: Container) -> FastAPI:
    # The web stack is loaded only by what serves HTTP, not by every CLI command.
    from incidents.api.factory import build_api
    from incidents.integrations.registry import routers

    return build_api(container, routers())


def create_worker_app() -> FastAPI:
    """The app of one of several worker processes (``incidents serve --workers N``).

    The parent process has applied the migrations already.
    """
    tune_runtime()
    settings = load_configuration()
    if settings.nats_url and not settings.nats_consumer:
        # Workers share a port: each needs a bus consumer of its own to see every event.
        name = f"{default_consumer_name(settings.port)}-{os.getpid()}"
        settings = replace(settings, nats_consumer=name)
    return _build_api(build_container(settings, apply_migrations=False))


def create_app(container: Container | None = None) -> FastAPI:
    """The HTTP application, wired to ``container`` (built from the environment if omitted)."""
    return _build_api(container or build_container())
