"""What a provider brings to the platform, declared in its own folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from incidents.integrations.connector_config import Parser
from incidents.integrations.credentials import CredentialKeys

if TYPE_CHECKING:
    from fastapi import APIRouter


@dataclass(frozen=True, slots=True)
class Provider:
    """One vendor: its section of ``integrations:`` and its inbound HTTP endpoints.

    A new vendor is a folder under :mod:`incidents.integrations` holding its payload
    parsing, its routes and one ``PROVIDER``, named once in
    :mod:`incidents.integrations.registry`.
    """

    name: str
    # How its entries under ``integrations.<name>`` give their credentials (alert
    # sources); None for a vendor that is only an ITSM connector.
    credentials: CredentialKeys | None
    # Its webhook endpoints (mounted under /api/v1), if it sends anything. A function,
    # so that reading the configuration (the CLI) does not load the web stack.
    routes: Callable[[], APIRouter] | None = None
    # ITSM connectors: parses one entry of ``connectors.<name>`` into the engine's view
    # and a client factory; the composition root builds the outbox destination.
    parse_connector: Parser | None = None
