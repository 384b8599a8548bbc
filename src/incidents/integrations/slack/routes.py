"""Slack's endpoints: slash commands and the Events API, both signed by Slack.

Neither takes a bearer token: each request is verified with the workspace's signing
secret (``v0`` HMAC-SHA256 over timestamp and body, compared in constant time), must
be at most 300 seconds old, and is accepted once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from fastapi import APIRouter, Request
from slack_sdk.webhook import WebhookClient
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from incidents.api.body import read_body_or_413
from incidents.api.problems import Problem
from incidents.api.state import container_of, json_response
from incidents.chatops.channels import IncidentChannel
from incidents.chatops.messages import ChatMessage, RecordChatMessage
from incidents.chatops.parsing import HELP, ChatCommand, Help, UsageError, parse
from incidents.chatops.port import ChatError
from incidents.chatops.service import ChatOps, ChatRequest, Reply
from incidents.incident.commands import IncidentNotFound
from incidents.integrations.slack.events import BadEvent, message_from_event
from incidents.integrations.slack.workspace import SlackWorkspace
from incidents.integrations.webhooks import refused
from incidents.log.commands import Rejected
from incidents.log.session import AppendResult

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/chat/slack", tags=["chat"])

# Slack gives up on an answer after 3 seconds; past this, the caller is told the
# command is under way and the result follows through response_url.
ACK_SECONDS = 2.0
MAX_BODY = 1024 * 1024
# Follow-ups still running: kept referenced so they are not collected mid-flight.
_FOLLOW_UPS: set[asyncio.Task[None]] = set()


def _workspace(request: Request, name: str) -> SlackWorkspace:
    found = container_of(request).chat.get(f"slack:{name}")
    if not isinstance(found, SlackWorkspace):
        raise Problem(404, "not-found", f"no Slack connector named {name!r} is configured")
    return found


async def _verified_body(request: Request, workspace: SlackWorkspace) -> bytes:
    body = await read_body_or_413(request, MAX_BODY)
    if not workspace.chat.verify_request(body, request.headers):
        raise refused(
            401,
            "the request is not signed with this Slack connector's signing secret, is older "
            "than 300 seconds, or was seen before",
            "slack",
        )
    return body


def _ephemeral(reply: Reply) -> Response:
    return json_response(
        {"response_type": "in_channel" if reply.public else "ephemeral", "text": reply.text}
    )


def _response_url_allowed(url: str, workspace: SlackWorkspace) -> bool:
    # Only Slack's own hooks (or the configured API host, a local server in tests):
    # a signed request cannot send our answers anywhere else.
    parts = urlsplit(url)
    api = urlsplit(workspace.connector.api_url)
    if parts.scheme == "https" and parts.hostname == "hooks.slack.com":
        return True
    return (parts.scheme, parts.netloc) == (api.scheme, api.netloc)


def _post_response(url: str, reply: Reply) -> None:
    try:
        WebhookClient(url, timeout=10).send(
            text=reply.text, response_type="in_channel" if reply.public else "ephemeral"
        )
    except Exception as exc:
        log.warning("the answer to a slash command could not be sent: %s", type(exc).__name__)


async def _follow_up(work: asyncio.Future[Reply], url: str | None, allowed: bool) -> None:
    reply = await work
    if url and allowed:
        await run_in_threadpool(_post_response, url, reply)
    else:
        log.warning("a slash command's result was not sent: its response_url is not Slack's")


def _run_safely(commands: ChatOps, request: ChatRequest, command: ChatCommand) -> Reply:
    """Run a command; an unexpected failure is logged and answered, never a 500 (Slack
    would show the caller only "dispatch_failed")."""
    try:
        return commands.run(request, command)
    except Exception:
        log.exception("a slash command failed")
        return Reply(
            "the command failed on the server; it may not have been carried out. "
            "Check the incident before trying again",
            ok=False,
        )


def _field(form: dict[str, list[str]], name: str, *, required: bool = True) -> str:
    values = form.get(name)
    if not values or not values[0].strip():
        if required:
            raise Problem(
                422,
                "invalid-payload",
                f"the slash command payload has no {name}",
                errors=[{"field": name, "detail": "missing"}],
            )
        return ""
    return values[0].strip()


@router.post(
    "/{name}/commands",
    summary="Receive a Slack slash command (/im ...)",
    responses={401: {"description": "Not signed by Slack, too old, or replayed"}},
)
async def slash_command(request: Request, name: str) -> Response:
    """Run ``/im new|ic|status|note|ack|help``; answers within Slack's 3 seconds.

    A command that takes longer is acknowledged ("working on it") and its result is
    sent to the command's ``response_url``.
    """
    workspace = _workspace(request, name)
    body = await _verified_body(request, workspace)
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    text = form.get("text", [""])[0]
    try:
        command = parse(text)
    except UsageError as exc:
        return _ephemeral(Reply(str(exc), ok=False))
    if isinstance(command, Help):
        return _ephemeral(Reply(HELP))
    if workspace.commands is None:
        raise Problem(503, "unavailable", "this process does not serve slash commands")
    chat_request = ChatRequest(
        channel_id=_field(form, "channel_id"),
        user_id=_field(form, "user_id"),
        text=text,
        request_id=_field(form, "trigger_id", required=False) or None,
    )
    response_url = _field(form, "response_url", required=False)
    work: asyncio.Future[Reply] = asyncio.ensure_future(
        run_in_threadpool(_run_safely, workspace.commands, chat_request, command)
    )
    done, _ = await asyncio.wait({work}, timeout=ACK_SECONDS)
    if work in done:
        return _ephemeral(work.result())
    allowed = _response_url_allowed(response_url, workspace)
    task = asyncio.create_task(_follow_up(work, response_url, allowed))
    _FOLLOW_UPS.add(task)
    task.add_done_callback(_FOLLOW_UPS.discard)
    return _ephemeral(Reply("working on it… the result follows in a moment"))


def _ignored(reason: str) -> Response:
    return json_response({"ok": True, "ignored": reason})


def _resolve(
    workspace: SlackWorkspace, message: ChatMessage
) -> tuple[IncidentChannel, ChatMessage] | None:
    """The message's incident channel (None: not one), and the message with its
    author's email: both lookups in one trip to a worker thread (both are cached)."""
    channel = workspace.channels.by_channel(workspace.connector.destination, message.channel_id)
    if channel is None:
        return None
    if message.user_id:
        try:
            email = workspace.chat.email_of(message.user_id)
        except ChatError:
            email = None  # recorded without it rather than lost
        if email:
            message = replace(message, author_email=email)
    return channel, message


@router.post(
    "/{name}/events",
    summary="Receive Slack Events API deliveries (messages in incident channels)",
    responses={401: {"description": "Not signed by Slack, too old, or replayed"}},
)
async def slack_events(request: Request, name: str) -> Response:
    """Record each message, edit and deletion in an incident channel on its timeline.

    Retries (``X-Slack-Retry-Num``) carry the same message and so the same event id:
    they are answered as duplicates and stored once.
    """
    workspace = _workspace(request, name)
    body = await _verified_body(request, workspace)
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Problem(400, "invalid-payload", "the Events API body is not JSON") from None
    if not isinstance(document, dict):
        raise Problem(400, "invalid-payload", "the Events API body is not a JSON object")
    kind = document.get("type")
    if kind == "url_verification":
        challenge = document.get("challenge")
        if not isinstance(challenge, str):
            raise Problem(
                422,
                "invalid-payload",
                "url_verification has no challenge",
                errors=[{"field": "challenge", "detail": "missing"}],
            )
        return json_response({"challenge": challenge})
    if kind != "event_callback":
        return _ignored(f"type {kind!r}")
    event = document.get("event")
    team = document.get("team_id")
    if not isinstance(event, dict) or not isinstance(team, str):
        raise Problem(
            422,
            "invalid-payload",
            "event_callback needs event and team_id",
            errors=[{"field": "event" if not isinstance(event, dict) else "team_id"}],
        )
    connector = workspace.connector
    try:
        message = message_from_event(event, team, connector.name, connector.workspace_url)
    except BadEvent as exc:
        raise Problem(
            422,
            "invalid-payload",
            f"the Slack event is not usable: {exc}",
            errors=[{"field": exc.field, "detail": str(exc)}],
        ) from None
    if message is None:
        return _ignored("not a person's message")
    found = await run_in_threadpool(_resolve, workspace, message)
    if found is None or workspace.incidents is None:
        return _ignored("not an incident channel")
    channel, message = found
    try:
        command = RecordChatMessage.of(channel.incident_id, message, f"integration:slack:{name}")
        result: AppendResult = await asyncio.wrap_future(workspace.incidents.submit(command))
    except IncidentNotFound:
        return _ignored("the incident no longer exists")
    except Rejected as exc:
        # Not storable as it is (an event the log refuses): retrying would not help.
        log.warning("a Slack message was not recorded: %s", exc)
        return _ignored(f"not recorded: {exc}")
    return json_response(
        {
            "ok": True,
            "event_id": result.event_id,
            "incident_id": channel.incident_id,
            "outcome": result.outcome.value,
        }
    )
