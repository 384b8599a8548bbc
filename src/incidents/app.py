"""The composition root: builds every adapter once and wires them together.

Nothing else in the package holds process-wide state or builds adapters; entrypoints
(the HTTP app, the CLI's local admin commands, the worker, tests, benchmarks) get what
they need from a :class:`Container` or from the builders below.
"""

from __future__ import annotations

import gc
import logging
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

from incidents.artifacts.local import LocalDirectoryStore
from incidents.artifacts.policy_bundles import PolicyBundles
from incidents.artifacts.ports import ObjectStore, ObjectStoreError
from incidents.artifacts.service import ArtifactService
from incidents.backup.stored import StoredBackups
from incidents.boards.projection import board_projection
from incidents.boards.service import BoardService
from incidents.bus.destination import BusDestination, Destination
from incidents.bus.jetstream import NatsBus
from incidents.bus.memory import InProcessBus
from incidents.bus.message import Bus
from incidents.bus.relay import OutboxRelay, RetryPolicy
from incidents.chatops.render import takes as chat_takes
from incidents.config import (
    ConfigError,
    Settings,
    load_settings,
    oidc_enabled,
    oidc_sign_in_enabled,
    outbox_destinations,
)
from incidents.identity.directory import Directory
from incidents.identity.oidc import OidcVerifier
from incidents.identity.oidc_login import OidcClient, OidcLogin
from incidents.identity.tokens import TokenService
from incidents.incident.correlation.routing import correlation_route
from incidents.incident.correlation.rules import CorrelationRules, RulesError, parse_rules
from incidents.incident.projection import incident_projection
from incidents.incident.service import IncidentService
from incidents.integrations.connector_config import Connectors, ConnectorsError
from incidents.integrations.credentials import Integrations, IntegrationsError
from incidents.integrations.provider import ChatContext, ConnectorRuntime
from incidents.integrations.registry import (
    ConnectorSections,
    build_connectors,
    parse_connectors,
    parse_integrations,
)
from incidents.integrations.sync_destination import ConnectorDestination
from incidents.integrations.sync_destination import takes as ticket_takes
from incidents.integrations.sync_poller import SyncPoller
from incidents.log.ports import EventWriter
from incidents.log.projections import Projections
from incidents.log.query import CursorCodec
from incidents.log.records import OutboxRoute
from incidents.observability.metrics import TimelineMetrics
from incidents.observability.sync_metrics import SyncMetrics
from incidents.observability.tracing import make_tracer
from incidents.policy.bundle import BundleError
from incidents.policy.decision_point import (
    DecisionPoint,
    EmbeddedDecisionPoint,
    RemoteDecisionPoint,
)
from incidents.policy.service import PolicyService
from incidents.ratelimit.limiter import InProcessLimiter, RateLimiter
from incidents.retention.job import RetentionJob
from incidents.retention.service import TOMBSTONE_SECRET, RetentionService
from incidents.retention.tiers import Periods
from incidents.retention.tombstone import TombstoneSigner
from incidents.sessions.console import ConsoleSessions, InProcessConsoleSessions, SessionLifetime
from incidents.sessions.registry import ConnectionRegistry, InProcessRegistry
from incidents.store.alert_reader import AlertReader
from incidents.store.archive_reader import ArchiveAwareReader
from incidents.store.board_reader import BoardReader
from incidents.store.chat_channels import ChatChannelStore
from incidents.store.engine import Backend, backend_of, make_engine
from incidents.store.event_reader import EventReader
from incidents.store.incident_reader import IncidentReader
from incidents.store.memory_writer import MemoryWriter
from incidents.store.migrate import current_revision, migrate
from incidents.store.outbox_store import OutboxStore
from incidents.store.postgres_writer import PostgresWriter
from incidents.store.redis_console_sessions import RedisConsoleSessions
from incidents.store.redis_limiter import RedisLimiter
from incidents.store.redis_sessions import RedisRegistry
from incidents.store.retention_store import SqlRetentionStore
from incidents.store.s3_objects import S3ObjectStore
from incidents.store.sqlite_writer import SqliteWriter
from incidents.store.sync_store import SqlSyncStore
from incidents.sync.engine import Bound, SyncEngine
from incidents.timeline.feed import LiveFeed
from incidents.timeline.group_commit import GroupCommitAppender
from incidents.timeline.service import TimelineService

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("incidents.app")


@dataclass(frozen=True, slots=True)
class Sections:
    """The structured sections of ``IM_CONFIG``, parsed and checked."""

    rules: CorrelationRules
    integrations: Integrations
    # The connectors section: ITSM connectors and chat workspaces.
    connectors: ConnectorSections = field(default_factory=ConnectorSections)


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
    except (ConnectorsError, IntegrationsError) as exc:
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
    return Projections([incident_projection(), board_projection()])


@dataclass(frozen=True, slots=True)
class Database:
    """An engine on the configured database, and what opening it did to the schema."""

    engine: Engine
    backend: Backend
    # The schema revision before and after the migrations this opening applied
    # (both None when it applied none).
    migrated_from: str | None = None
    revision: str | None = None

    @property
    def created(self) -> bool:
        """Whether this opening created the schema (a new, empty database)."""
        return self.migrated_from is None and self.revision is not None


def open_database(settings: Settings, *, apply_migrations: bool = True) -> Database:
    """The configured database with its durability setting, migrated unless told not to."""
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    backend = backend_of(settings.database_url)
    if not apply_migrations:
        return Database(engine, backend)
    before, after = migrate(engine)
    return Database(engine, backend, before, after)


def database_revision(settings: Settings) -> str | None:
    """The schema revision of the configured database (None when it has none)."""
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def build_tokens(settings: Settings, database: Database) -> TokenService:
    """API tokens, with lookups cached for IM_TOKEN_CACHE_SECONDS."""
    return TokenService(database.engine, settings.token_cache_seconds)


def build_directory(settings: Settings, database: Database) -> Directory:
    """Users, groups and grants, with subjects cached for IM_POLICY_CACHE_SECONDS."""
    return Directory(database.engine, settings.policy_cache_seconds)


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


def outbox_routes(settings: Settings, sections: Sections) -> list[OutboxRoute]:
    """Every destination an appended event may be queued for, with the events each
    takes: the configured ones (every event), one per ITSM connector and one per chat
    workspace (the incident events they act on)."""
    connectors = sections.connectors
    return [
        *(OutboxRoute(name) for name in outbox_destinations(settings)),
        *(OutboxRoute(name, ticket_takes) for name in connectors.itsm.ids),
        *(OutboxRoute(c.destination, chat_takes) for c in connectors.chat),
    ]


def destination_names(settings: Settings, sections: Sections) -> list[str]:
    """The names of every outbox destination (see :func:`outbox_routes`)."""
    return [route.destination for route in outbox_routes(settings, sections)]


def build_policy(settings: Settings, directory: Directory, tracer: Tracer) -> PolicyService:
    """The policy decision point the settings choose, behind the policy service."""
    pdp: DecisionPoint
    if settings.opa_url:
        pdp = RemoteDecisionPoint(settings.opa_url)
    elif settings.policy_bundle:
        pdp = EmbeddedDecisionPoint(modules=policy_bundle_of(settings))
    else:
        pdp = EmbeddedDecisionPoint(Path(settings.policy_dir) if settings.policy_dir else None)
    return PolicyService(directory, pdp, tracer, settings.policy_cache_seconds)


def build_policy_bundles(settings: Settings) -> PolicyBundles:
    """Policy bundles in the artifacts' directory or bucket (``policies/``)."""
    return PolicyBundles(build_object_store(settings, "policies"), settings.artifacts_max_bytes)


def policy_bundle_of(settings: Settings) -> dict[str, str]:
    """The policies of IM_POLICY_BUNDLE, fetched and checked against its digest."""
    try:
        return build_policy_bundles(settings).policies(settings.policy_bundle)
    except (BundleError, ObjectStoreError) as exc:
        raise ConfigError(f"IM_POLICY_BUNDLE: {exc}") from None


def build_chat(
    sections: Sections,
    engine: Engine,
    policy: PolicyService,
    directory: Directory,
    commands: IncidentService | None,
) -> dict[str, ConnectorRuntime]:
    """Each chat connector (adapter, slash commands, outbox destination), by
    ``<provider>:<name>``."""
    if not sections.connectors.chat:
        return {}
    context = ChatContext(
        policy=policy,
        incidents=IncidentReader(engine),
        events=EventReader(engine),
        directory=directory,
        channels=ChatChannelStore(engine),
        commands=commands,
    )
    return build_connectors(sections.connectors.chat, context)


def build_relay(
    settings: Settings, database: Database, bus: Bus, extra: Sequence[Destination] = ()
) -> OutboxRelay:
    """A relay draining the configured destinations (and ``extra``, the connectors')
    with the configured retry policy."""
    return OutboxRelay(
        build_outbox_store(settings, database),
        [*build_destinations(settings, bus), *extra],
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
    # How long a stopping worker goes on delivering what is due (IM_SHUTDOWN_DRAIN_SECONDS).
    drain_seconds: float = 0.0

    def start(self) -> None:
        self.bus.start()
        self.relay.start()

    def close(self) -> None:
        """Stop, first delivering what is due for up to ``drain_seconds``."""
        self.relay.stop(drain_seconds=self.drain_seconds)
        self.bus.close()
        self.database.engine.dispose()


@dataclass
class ConnectorWorker:
    """A worker that also delivers connector rows: the sync engine needs the log's
    writer (ticket changes are applied as commands), so it runs a whole container
    without HTTP, its relay and poller included."""

    container: Container

    @property
    def relay(self) -> OutboxRelay:
        """The container's relay (built: a worker's settings turn the relay on)."""
        if self.container.relay is None:
            raise RuntimeError("the worker's container has no outbox relay")
        return self.container.relay

    def start(self) -> None:
        self.container.start()

    def close(self) -> None:
        """Stop; the container's relay drains for IM_SHUTDOWN_DRAIN_SECONDS."""
        self.container.close()


def build_worker(settings: Settings) -> Worker | ConnectorWorker:
    """A relay delivering the configured destinations; it publishes to the bus only.

    With connectors configured it delivers their rows too (ITSM tickets, chat
    channels), and polls the ITSM vendors.
    """
    connectors = parse_sections(settings).connectors
    if connectors.itsm.entries or connectors.chat:
        return ConnectorWorker(
            build_container(replace(settings, outbox_relay=True), consume_bus=False)
        )
    database = open_database(settings)
    bus = build_bus(settings, consume=False)
    return Worker(
        database, bus, build_relay(settings, database, bus), settings.shutdown_drain_seconds
    )


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
    # Console sign-in at the OIDC provider; None unless IM_OIDC_CLIENT_ID is set.
    oidc_login: OidcLogin | None = None
    # The alert sources allowed to post to /api/v1/ingest/*, with their credentials.
    integrations: Integrations = field(default_factory=Integrations)
    # Lists alerts (GET /api/v1/alerts); built with the container.
    alerts: AlertReader | None = None
    # The event bus (in-process, or NATS JetStream with IM_NATS_URL): every committed
    # event reaches it through the outbox; subscribe to receive them.
    bus: Bus = field(default_factory=InProcessBus)
    # Delivers outbox rows; None when IM_OUTBOX_RELAY is off (`incidents worker` does it).
    relay: OutboxRelay | None = None
    # Persona status boards (GET /api/v1/incidents/{id}/board, the console); built with
    # the container.
    boards: BoardService | None = None
    # Keys the web console's CSRF proofs (see api/cookie_session.py).
    console_secret: bytes = b""
    # Signed-in console browsers (in Redis with IM_REDIS_URL: shared by every process).
    console_sessions: ConsoleSessions = field(
        default_factory=lambda: build_console_sessions(Settings())
    )
    # Legal holds, archive, purge and erasure (see docs/retention.md).
    retention: RetentionService | None = None
    # The periodic retention run; None unless IM_RETENTION_INTERVAL_SECONDS is set.
    retention_job: RetentionJob | None = None
    # Rate limits of API tokens and webhook integrations (Redis with IM_REDIS_URL).
    rate_limiter: RateLimiter = field(default_factory=InProcessLimiter)
    # Files attached to incidents (a local directory, or S3-compatible storage).
    artifacts: ArtifactService | None = None
    # Open SSE and WebSocket connections (in Redis with IM_REDIS_URL: every process's).
    connections: ConnectionRegistry = field(default_factory=InProcessRegistry)
    # The configured ITSM connectors, the sync engine (None without connectors) and
    # the pollers that bring ticket changes in.
    connectors: Connectors = field(default_factory=Connectors)
    sync: SyncEngine | None = None
    poller: SyncPoller | None = None
    # Chat workspaces (connectors:), by "<provider>:<name>": their routes find them here.
    chat: dict[str, ConnectorRuntime] = field(default_factory=dict)

    def start(self) -> None:
        """Start background work (the group-commit writer); build projections if new."""
        self.appender.start()
        self.bus.start()
        if self.relay is not None:
            self.relay.start()
        self.incidents.ensure_built()
        if self.retention_job is not None:
            self.retention_job.start()
        if self.poller is not None:
            self.poller.start()

    def close(self) -> None:
        """Finish queued appends, deliver what they queued, then release the database."""
        if self.poller is not None:
            self.poller.stop()
        if self.retention_job is not None:
            self.retention_job.stop()
        self.appender.stop()
        if self.relay is not None:
            self.relay.stop(drain_seconds=self.settings.shutdown_drain_seconds)
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
    consume_bus: bool = True,
) -> Container:
    """Build the adapters for ``settings`` (default: from the environment)."""
    settings = settings or load_settings()
    sections = parse_sections(settings)
    database = open_database(settings, apply_migrations=apply_migrations)
    engine, backend = database.engine, database.backend
    writer: EventWriter = (
        SqliteWriter(engine) if backend is Backend.SQLITE else PostgresWriter(engine)
    )
    # Incident reads include the compressed archive of archived incidents.
    reader = ArchiveAwareReader(engine)
    registry = projections()
    appender = GroupCommitAppender(
        writer,
        max_events=settings.group_commit_max_events,
        projection=registry.open,
        outbox_destinations=outbox_routes(settings, sections),
    )
    bus = build_bus(settings, consume=consume_bus)
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
    retention = build_retention(settings, database, reader, timeline, registry)
    timeline.seal = retention.trusted_seal
    artifacts = ArtifactService(
        build_object_store(settings),
        timeline,
        settings.artifacts_max_bytes,
        erased_at=retention.last_erasure_us,
    )
    retention.copies = artifacts
    retention_job = (
        RetentionJob(retention, settings.retention_interval_seconds)
        if settings.retention_interval_seconds > 0
        else None
    )
    tokens = build_tokens(settings, database)
    directory = build_directory(settings, database)
    policy = build_policy(settings, directory, tracer)
    # A grant, revocation or deletion takes effect at once in this process (other
    # processes within IM_POLICY_CACHE_SECONDS / IM_TOKEN_CACHE_SECONDS).
    directory.on_change(tokens.invalidate)
    directory.on_change(policy.invalidate)
    # Keys are fetched on the first OIDC request, not here: a provider that is down
    # must not stop the server (API tokens keep working).
    oidc = OidcVerifier.from_settings(settings) if oidc_enabled(settings) else None
    itsm = sections.connectors.itsm
    sync = build_sync(itsm, engine, incidents, policy, metrics, tracer)
    chat = build_chat(sections, engine, policy, directory, incidents)
    extra: list[Destination] = [
        *(ConnectorDestination(sync, i) for i in itsm.ids if sync is not None),
        *(runtime.destination for runtime in chat.values()),
    ]
    relay = None
    if settings.outbox_relay and destination_names(settings, sections):
        relay = build_relay(settings, database, bus, extra)
        appender.on_commit(relay.notify)
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
        oidc_login=OidcLogin(oidc, OidcClient.from_settings(settings))
        if oidc is not None and oidc_sign_in_enabled(settings)
        else None,
        integrations=sections.integrations,
        alerts=AlertReader(engine, cursors),
        bus=bus,
        relay=relay,
        boards=BoardService(BoardReader(engine), incidents.reader),
        console_secret=reader.instance_secret("console-csrf"),
        console_sessions=build_console_sessions(settings),
        retention=retention,
        retention_job=retention_job,
        rate_limiter=build_rate_limiter(settings),
        connections=RedisRegistry(settings.redis_url)
        if settings.redis_url
        else InProcessRegistry(),
        artifacts=artifacts,
        connectors=itsm,
        sync=sync,
        poller=SyncPoller(sync) if sync is not None else None,
        chat=chat,
    )


def artifacts_directory(settings: Settings) -> Path:
    """Where local artifacts go: IM_ARTIFACTS_DIR, else artifacts/ beside a SQLite
    database, else ./artifacts."""
    if settings.artifacts_dir:
        return Path(settings.artifacts_dir)
    if backend_of(settings.database_url) is Backend.SQLITE:
        path = settings.database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            return Path(path).parent / "artifacts"
    return Path("artifacts")


def build_object_store(settings: Settings, namespace: str = "artifacts") -> ObjectStore:
    """S3-compatible storage when IM_ARTIFACTS_S3_BUCKET is set, else a local directory.

    ``namespace`` keeps kinds of objects apart: artifacts under ``artifacts/`` in the
    bucket (at the top of the local directory), backups under ``backups/`` in both.
    """
    if settings.artifacts_s3_bucket:
        return S3ObjectStore(
            settings.artifacts_s3_bucket,
            endpoint_url=settings.artifacts_s3_endpoint_url or None,
            region=settings.artifacts_s3_region,
            prefix=f"{namespace}/",
        )
    root = artifacts_directory(settings)
    return LocalDirectoryStore(root if namespace == "artifacts" else root / namespace)


def build_stored_backups(settings: Settings) -> StoredBackups:
    """Backup archives in the artifacts' directory or bucket (``backups/``)."""
    return StoredBackups(
        build_object_store(settings, "backups"), settings.artifacts_backup_max_bytes
    )


def build_rate_limiter(settings: Settings) -> RateLimiter:
    """Redis when IM_REDIS_URL is set (shared by every process), else in-process."""
    if settings.redis_url:
        return RedisLimiter(settings.redis_url)
    return InProcessLimiter()


def build_console_sessions(settings: Settings) -> ConsoleSessions:
    """Redis when IM_REDIS_URL is set (every process sees every session), else in-process."""
    lifetime = SessionLifetime(
        settings.console_session_max_seconds, settings.console_session_idle_seconds
    )
    if settings.redis_url:
        return RedisConsoleSessions(settings.redis_url, lifetime)
    if settings.workers > 1:
        log.warning(
            "console sessions are kept per process: with IM_WORKERS=%d, set IM_REDIS_URL "
            "so that a browser signed in on one worker is known to the others",
            settings.workers,
        )
    return InProcessConsoleSessions(lifetime)


def build_retention(
    settings: Settings,
    database: Database,
    reader: ArchiveAwareReader,
    timeline: TimelineService,
    registry: Projections,
) -> RetentionService:
    """Retention on the configured database, with the instance's tombstone secret."""
    return RetentionService(
        SqlRetentionStore(database.engine, database.backend, registry.refold_incident),
        timeline,
        TombstoneSigner(reader.instance_secret(TOMBSTONE_SECRET)),
        Periods(
            settings.retention_archive_after_days,
            settings.retention_purge_after_days,
            settings.retention_unattached_purge_after_days,
        ),
        forget=reader.forget,
    )


def open_sync_tools(settings: Settings | None = None) -> Container:
    """A container for ``incidents sync reconcile|status``: the log's writer runs, the
    relay and the poller do not (a server's relay delivers what reconcile queues)."""
    settings = replace(settings or load_configuration(), outbox_relay=False)
    container = build_container(settings)
    container.appender.start()
    return container


def build_sync(
    connectors: Connectors,
    engine: Engine,
    incidents: IncidentService,
    policy: PolicyService,
    metrics: TimelineMetrics,
    tracer: Tracer,
) -> SyncEngine | None:
    """The sync engine over the configured connectors (None when there are none).

    What reaches a ticket is decided for the connector's own identity, through the
    same policy decision every reader gets.
    """
    if not connectors.entries:
        return None
    bound = [Bound(entry.connector, entry.open_client()) for entry in connectors.entries]
    return SyncEngine(
        SqlSyncStore(engine),
        incidents,
        lambda identity: policy.decide(identity),
        bound,
        metrics=SyncMetrics(metrics.registry),
        tracer=tracer,
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
    from incidents.web.console import mount_console

    app = build_api(container, routers())
    mount_console(app)
    return app


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
