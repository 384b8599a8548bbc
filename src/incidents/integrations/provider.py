"""What a provider brings to the platform, declared in its own folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from incidents.bus.destination import Destination
from incidents.chatops.channels import ChannelMap
from incidents.identity.directory import Directory
from incidents.incident.ports import IncidentStore
from incidents.incident.service import IncidentService
from incidents.integrations.connector_config import Parser
from incidents.integrations.credentials import CredentialKeys
from incidents.policy.service import PolicyService
from incidents.store.event_reader import EventReader

if TYPE_CHECKING:
    from fastapi import APIRouter


@dataclass(frozen=True, slots=True)
class Provider:
    """One vendor: its section of ``integrations:`` (alert sources) or of
    ``connectors:`` (chat workspaces), and its HTTP endpoints.

    A new vendor is a folder under :mod:`incidents.integrations` holding its payload
    parsing, its routes and one ``PROVIDER``, named once in
    :mod:`incidents.integrations.registry`.
    """

    name: str
    # How its entries under ``integrations.<name>`` give their credentials (None: it
    # is not an alert source).
    credentials: CredentialKeys | None = None
    # Its webhook endpoints (mounted under /api/v1), if it sends anything. A function,
    # so that reading the configuration (the CLI) does not load the web stack.
    routes: Callable[[], APIRouter] | None = None
    # ITSM connectors: parses one entry of ``connectors.<name>`` into the engine's view
    # and a client factory; the composition root builds the outbox destination.
    parse_connector: Parser | None = None
    # Chat workspaces: its entries under ``connectors.<name>`` and how each is built
    # (with an outbox destination); None when it has no such section.
    connectors: ConnectorKind | None = None


class Connector(Protocol):
    """One configured entry of a provider's ``connectors:`` section (a chat workspace)."""

    @property
    def name(self) -> str: ...

    @property
    def provider(self) -> str: ...

    @property
    def destination(self) -> str:
        """The outbox destination its rows are written for."""
        ...


class ConnectorRuntime(Protocol):
    """A connector built for a process: its outbox destination (and whatever its
    routes need, found on the container by ``<provider>:<name>``)."""

    @property
    def destination(self) -> Destination: ...


@dataclass(frozen=True, slots=True)
class ChatContext:
    """What a chat connector needs from the platform, built by the composition root."""

    policy: PolicyService
    # Incidents as they stand (the projection), for channel names and topics.
    incidents: IncidentStore
    events: EventReader
    directory: Directory
    channels: ChannelMap
    # Runs slash commands; None in a process that only relays (``incidents worker``).
    commands: IncidentService | None = None


@dataclass(frozen=True, slots=True)
class ConnectorKind:
    """How a provider reads its ``connectors.<provider>`` entries and builds each one."""

    # Validates the section's list; raises IntegrationsError naming the key at fault.
    parse: Callable[[object], tuple[Connector, ...]]
    # The connector's runtime (its chat adapter, commands and outbox destination).
    build: Callable[[Any, ChatContext], ConnectorRuntime]
