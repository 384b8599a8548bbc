"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, FastAPI

from incidents import __version__
from incidents.api import (
    alerts,
    artifacts,
    boards,
    health,
    incidents,
    retention,
    scim,
    session,
    streams,
    sync,
    timeline,
)
from incidents.api.docs import mount_docs
from incidents.api.graphql import graphql_router
from incidents.api.nul import refuse_nul
from incidents.api.problems import install_problem_handlers
from incidents.api.readiness import readiness_for

if TYPE_CHECKING:
    from incidents.app import Container


def build_api(container: Container, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """An app serving ``container`` and the providers' ``routers``; starting it starts
    the writer, stopping it drains it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container.start()
        try:
            yield
        finally:
            await container.feed.close()
            await container.rate_limiter.close()
            await container.connections.close()
            await container.console_sessions.close()
            container.close()
            app.state.readiness.close()

    app = FastAPI(
        title="Incidents",
        version=__version__,
        description="Incident management on an append-only, tamper-evident CloudEvents timeline.",
        lifespan=lifespan,
        # The platform emits its own spans and metrics; the framework's per-request
        # telemetry hooks would only cost time on the hot path.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Every endpoint but health, metrics and the API's description authenticates:
        # the description and its page are served by api/docs.py instead.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Before any route touches a database: both backends answer NUL alike.
        dependencies=[Depends(refuse_nul)],
    )
    app.state.container = container
    app.state.readiness = readiness_for(container)
    install_problem_handlers(app)
    app.include_router(health.router)
    mount_docs(app)
    app.include_router(session.router)
    app.include_router(timeline.router)
    app.include_router(scim.router)
    app.include_router(incidents.router)
    app.include_router(alerts.router)
    app.include_router(boards.router)
    app.include_router(retention.router)
    app.include_router(artifacts.router)
    app.include_router(sync.router)
    for router in routers:
        app.include_router(router)
    app.include_router(streams.router)
    app.include_router(graphql_router(container.settings))
    return app
