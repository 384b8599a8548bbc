"""The one place that names every provider this build knows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from incidents.integrations import alertmanager, pagerduty
from incidents.integrations.credentials import Integrations
from incidents.integrations.credentials import parse_integrations as parse_with
from incidents.integrations.provider import Provider

if TYPE_CHECKING:
    from fastapi import APIRouter

PROVIDERS: tuple[Provider, ...] = (alertmanager.PROVIDER, pagerduty.PROVIDER)


def parse_integrations(doc: object) -> Integrations:
    """Validate the ``integrations`` section against the known providers."""
    return parse_with(doc, {p.name: p.credentials for p in PROVIDERS})


def routers() -> list[APIRouter]:
    """Every provider's inbound endpoints, for the HTTP app."""
    return [p.routes() for p in PROVIDERS if p.routes is not None]
