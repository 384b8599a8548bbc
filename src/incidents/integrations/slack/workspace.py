"""One Slack workspace built for a process: adapter, commands and outbox destination."""

from __future__ import annotations

from dataclasses import dataclass

from incidents.chatops.channels import ChannelMap
from incidents.chatops.service import ChatOps
from incidents.incident.service import IncidentService
from incidents.integrations.provider import ChatContext
from incidents.integrations.slack.client import SlackChat
from incidents.integrations.slack.config import SlackConnector
from incidents.integrations.slack.destination import SlackDestination


@dataclass(frozen=True, slots=True)
class SlackWorkspace:
    """What the Slack routes and the relay use for one ``connectors.slack`` entry."""

    connector: SlackConnector
    chat: SlackChat
    destination: SlackDestination
    channels: ChannelMap
    # None in a relay-only process (no slash commands served there).
    commands: ChatOps | None
    incidents: IncidentService | None


def build_workspace(connector: SlackConnector, context: ChatContext) -> SlackWorkspace:
    """The adapter on the Web API, and the services on top of it."""
    chat = SlackChat(connector)
    commands = (
        ChatOps(connector.destination, chat, context.policy, context.commands, context.channels)
        if context.commands is not None
        else None
    )
    return SlackWorkspace(
        connector,
        chat,
        SlackDestination(connector, chat, context),
        context.channels,
        commands,
        context.commands,
    )
