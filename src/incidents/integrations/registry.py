"""The one place that names every provider this build knows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from incidents.integrations import alertmanager, jira, pagerduty, servicenow, slack
from incidents.integrations.connector_config import Connectors, ConnectorsError
from incidents.integrations.connector_config import parse_connectors as parse_itsm_with
from incidents.integrations.credentials import Integrations
from incidents.integrations.credentials import parse_integrations as parse_with
from incidents.integrations.provider import ChatContext, Connector, ConnectorRuntime, Provider

if TYPE_CHECKING:
    from fastapi import APIRouter

PROVIDERS: tuple[Provider, ...] = (
    alertmanager.PROVIDER,
    pagerduty.PROVIDER,
    servicenow.PROVIDER,
    jira.PROVIDER,
    slack.PROVIDER,
)


def parse_integrations(doc: object) -> Integrations:
    """Validate the ``integrations`` section against the known providers."""
    return parse_with(doc, {p.name: p.credentials for p in PROVIDERS if p.credentials is not None})


@dataclass(frozen=True, slots=True)
class ConnectorSections:
    """The ``connectors`` section, by kind: ITSM connectors (kept in sync with
    incidents) and chat workspaces."""

    itsm: Connectors = field(default_factory=Connectors)
    chat: tuple[Connector, ...] = ()


def parse_connectors(doc: object) -> ConnectorSections:
    """Validate the ``connectors`` section; raises :class:`ConnectorsError` (or the
    chat parser's IntegrationsError) naming the key at fault."""
    if doc is None:
        return ConnectorSections()
    if not isinstance(doc, dict):
        raise ConnectorsError("connectors: expected a mapping of vendor names")
    itsm = {p.name: p.parse_connector for p in PROVIDERS if p.parse_connector is not None}
    chat = {p.name: p.connectors for p in PROVIDERS if p.connectors is not None}
    for vendor in doc:
        if vendor not in itsm and vendor not in chat:
            known = ", ".join(sorted([*itsm, *chat]))
            raise ConnectorsError(f"connectors.{vendor}: unknown vendor; known: {known}")
    chat_connectors: list[Connector] = []
    for vendor, entries in doc.items():
        kind = chat.get(str(vendor))
        if kind is not None:
            chat_connectors.extend(kind.parse(entries))
    itsm_doc = {vendor: entries for vendor, entries in doc.items() if vendor in itsm}
    return ConnectorSections(parse_itsm_with(itsm_doc, itsm), tuple(chat_connectors))


def build_connectors(
    connectors: tuple[Connector, ...], context: ChatContext
) -> dict[str, ConnectorRuntime]:
    """Each chat connector built for this process, by ``<provider>:<name>``."""
    kinds = {p.name: p.connectors for p in PROVIDERS if p.connectors is not None}
    built: dict[str, ConnectorRuntime] = {}
    for connector in connectors:
        kind = kinds[connector.provider]
        built[f"{connector.provider}:{connector.name}"] = kind.build(connector, context)
    return built


def routers() -> list[APIRouter]:
    """Every provider's inbound endpoints, for the HTTP app."""
    return [p.routes() for p in PROVIDERS if p.routes is not None]
