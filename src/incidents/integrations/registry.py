"""The one place that names every provider this build knows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from incidents.integrations import alertmanager, jira, pagerduty, servicenow
from incidents.integrations.connector_config import Connectors
from incidents.integrations.connector_config import parse_connectors as parse_connectors_with
from incidents.integrations.credentials import Integrations
from incidents.integrations.credentials import parse_integrations as parse_with
from incidents.integrations.provider import Provider

if TYPE_CHECKING:
    from fastapi import APIRouter

PROVIDERS: tuple[Provider, ...] = (
    alertmanager.PROVIDER,
    pagerduty.PROVIDER,
    servicenow.PROVIDER,
    jira.PROVIDER,
)


def parse_integrations(doc: object) -> Integrations:
    """Validate the ``integrations`` section against the known providers."""
    return parse_with(doc, {p.name: p.credentials for p in PROVIDERS if p.credentials})


def parse_connectors(doc: object) -> Connectors:
    """Validate the ``connectors`` section against the known ITSM vendors."""
    return parse_connectors_with(
        doc, {p.name: p.parse_connector for p in PROVIDERS if p.parse_connector is not None}
    )


def routers() -> list[APIRouter]:
    """Every provider's inbound endpoints, for the HTTP app."""
    return [p.routes() for p in PROVIDERS if p.routes is not None]
