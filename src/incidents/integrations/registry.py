"""The one place that names every provider this build knows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from incidents.integrations import alertmanager, pagerduty, slack
from incidents.integrations.credentials import Integrations, IntegrationsError
from incidents.integrations.credentials import parse_integrations as parse_with
from incidents.integrations.provider import ChatContext, Connector, ConnectorRuntime, Provider

if TYPE_CHECKING:
    from fastapi import APIRouter

PROVIDERS: tuple[Provider, ...] = (alertmanager.PROVIDER, pagerduty.PROVIDER, slack.PROVIDER)


def parse_integrations(doc: object) -> Integrations:
    """Validate the ``integrations`` section against the known providers."""
    return parse_with(doc, {p.name: p.credentials for p in PROVIDERS if p.credentials is not None})


def parse_connectors(doc: object) -> tuple[Connector, ...]:
    """Validate the ``connectors`` section (chat workspaces); raises IntegrationsError."""
    if doc is None:
        return ()
    kinds = {p.name: p.connectors for p in PROVIDERS if p.connectors is not None}
    if not isinstance(doc, dict):
        raise IntegrationsError("connectors: must be a mapping of provider to a list")
    out: list[Connector] = []
    for provider, entries in doc.items():
        kind = kinds.get(str(provider))
        if kind is None:
            raise IntegrationsError(
                f"connectors: unknown provider {provider!r} (known: {', '.join(kinds)})"
            )
        out.extend(kind.parse(entries))
    return tuple(out)


def build_connectors(
    connectors: tuple[Connector, ...], context: ChatContext
) -> dict[str, ConnectorRuntime]:
    """Each connector built for this process, by ``<provider>:<name>``."""
    kinds = {p.name: p.connectors for p in PROVIDERS if p.connectors is not None}
    built: dict[str, ConnectorRuntime] = {}
    for connector in connectors:
        kind = kinds[connector.provider]
        built[f"{connector.provider}:{connector.name}"] = kind.build(connector, context)
    return built


def routers() -> list[APIRouter]:
    """Every provider's inbound endpoints, for the HTTP app."""
    return [p.routes() for p in PROVIDERS if p.routes is not None]
