"""The composition root: builds every adapter once and wires them together.

Nothing else in the package holds process-wide state; entrypoints (the HTTP app, the
CLI's local admin commands, tests, benchmarks) get what they need from a
:class:`Container`.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Tracer
from sqlalchemy import Engine

from incidents.api.factory import build_api
from incidents.bus.memory import InProcessBus
from incidents.bus.message import Bus
from incidents.bus.relay import OutboxRelay
from incidents.bus.wiring import build_bus, build_relay, default_consumer_name
from incidents.config import Settings, load_settings, oidc_enabled, outbox_destinations
from incidents.connectors.cloudevents import correlation_route
from incidents.connectors.integrations import Integrations, parse_integrations
from incidents.correlation.rules import parse_rules
from incidents.identity.directory import Directory
from incidents.identity.oidc import OidcVerifier
from incidents.identity.tokens import TokenService
from incidents.observability.metrics import TimelineMetrics
from incidents.observability.tracing import make_tracer
from incidents.orchestrator.projection import ProjectionSession
from incidents.orchestrator.service import IncidentService
from incidents.policy.decision_point import (
    DecisionPoint,
    EmbeddedDecisionPoint,
    RemoteDecisionPoint,
)
from incidents.policy.service import PolicyService
from incidents.store.alert_reader import AlertReader
from incidents.store.engine import Backend, backend_of, make_engine
from incidents.store.event_reader import EventReader
from incidents.store.incident_reader import IncidentReader
from incidents.store.migrate import migrate
from incidents.store.postgres_writer import PostgresWriter
from incidents.store.sqlite_writer import SqliteWriter
from incidents.timeline.append import EventWriter, GroupCommitAppender
from incidents.timeline.feed import LiveFeed
from incidents.timeline.query import CursorCodec
from incidents.timeline.service import TimelineService


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

    def start(self) -> None:
        """Start background work (the group-commit writer); build projections if new."""
        self.appender.start()
        self.bus.start()
        if self.relay is not None:
            self.relay.start()
        self.incidents.ensure_built()

    def close(self) -> None:
        """Finish queued appends, deliver what they queued, then release the database."""
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
) -> Container:
    """Build the adapters for ``settings`` (default: from the environment)."""
    settings = settings or load_settings()
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    if apply_migrations:
        migrate(engine)
    backend = backend_of(settings.database_url)
    writer: EventWriter = (
        SqliteWriter(engine) if backend is Backend.SQLITE else PostgresWriter(engine)
    )
    reader = EventReader(engine)
    appender = GroupCommitAppender(
        writer,
        max_events=settings.group_commit_max_events,
        projection=ProjectionSession,
        outbox_destinations=outbox_destinations(settings),
    )
    bus = build_bus(settings)
    # Streams wake on this process's commits, and on events other servers published.
    feed = LiveFeed(reader, settings.stream_poll_seconds)
    appender.on_commit(feed.wake)
    bus.subscribe(lambda _message: feed.wake())
    relay = None
    if settings.outbox_relay and outbox_destinations(settings):
        relay = build_relay(settings, engine, backend, bus)
        appender.on_commit(relay.notify)
    metrics = TimelineMetrics()
    appender.on_group(metrics.observe_group)
    tracer_provider, tracer = make_tracer(settings.otel_exporter, span_exporter)
    cursors = CursorCodec(reader.instance_secret("cursor-hmac"))
    incidents = IncidentService(
        appender, IncidentReader(engine), reader, parse_rules(settings.correlation), cursors
    )
    timeline = TimelineService(reader, appender, cursors, metrics, tracer)
    timeline.route = correlation_route(incidents.rules)
    tokens = TokenService(engine, settings.token_cache_seconds)
    directory = Directory(engine, settings.policy_cache_seconds)
    pdp: DecisionPoint = (
        RemoteDecisionPoint(settings.opa_url)
        if settings.opa_url
        else EmbeddedDecisionPoint(Path(settings.policy_dir) if settings.policy_dir else None)
    )
    policy = PolicyService(directory, pdp, tracer, settings.policy_cache_seconds)
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
        integrations=parse_integrations(settings.integrations),
        alerts=AlertReader(engine, cursors),
        bus=bus,
        relay=relay,
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


def create_worker_app() -> FastAPI:
    """The app of one of several worker processes (``incidents serve --workers N``).

    The parent process has applied the migrations already.
    """
    tune_runtime()
    settings = load_settings()
    if settings.nats_url and not settings.nats_consumer:
        # Workers share a port: each needs a bus consumer of its own to see every event.
        name = f"{default_consumer_name(settings.port)}-{os.getpid()}"
        settings = replace(settings, nats_consumer=name)
    return build_api(build_container(settings, apply_migrations=False))


def create_app(container: Container | None = None) -> FastAPI:
    """The HTTP application, wired to ``container`` (built from the environment if omitted)."""
    return build_api(container or build_container())
