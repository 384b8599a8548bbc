"""Slack: slash commands, per-incident channels, and channel messages on the timeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from incidents.integrations.provider import ChatContext, ConnectorKind, ConnectorRuntime, Provider
from incidents.integrations.slack.config import PROVIDER_NAME, parse_slack

if TYPE_CHECKING:
    from fastapi import APIRouter


def _routes() -> APIRouter:
    from incidents.integrations.slack.routes import router

    return router


def _build(connector: Any, context: ChatContext) -> ConnectorRuntime:
    from incidents.integrations.slack.workspace import build_workspace

    return build_workspace(connector, context)


PROVIDER = Provider(PROVIDER_NAME, routes=_routes, connectors=ConnectorKind(parse_slack, _build))
