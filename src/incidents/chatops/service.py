"""Running a slash command: who is asking, may they, and the same incident command
the REST API runs.

The chat user is mapped to a directory user by the email on their chat account; the
decision is the one :meth:`PolicyService.decide` takes for that user over the API, and
the action is enforced with :meth:`PolicyService.require`. Any refusal is answered with
a message saying why, and nothing is recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from incidents.chatops.acknowledge import AcknowledgeAlert, AlertNotFound
from incidents.chatops.channels import ChannelMap
from incidents.chatops.parsing import (
    HELP,
    Ack,
    ChatCommand,
    Commander,
    Help,
    New,
    Note,
    SetStatus,
    UsageError,
)
from incidents.chatops.port import ChatError, ChatPort
from incidents.incident.commands import (
    Acknowledge,
    AddNote,
    AssignRole,
    ChangeStatus,
    CommandConflict,
    CommandResult,
    Declare,
    IncidentNotFound,
    InvalidCommand,
)
from incidents.incident.lifecycle import InvalidTransition, Status
from incidents.incident.service import IncidentService
from incidents.log.commands import Command, Rejected
from incidents.policy.model import Action, Decision, PolicyUnavailable
from incidents.policy.service import PolicyDenied, PolicyService, UnknownSubject

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A slash command as the chat system sent it."""

    channel_id: str
    user_id: str
    text: str
    # The chat system's id of this invocation (Slack's trigger_id): a retry of the same
    # invocation declares only once.
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a command: shown only to the caller unless ``public``."""

    text: str
    ok: bool = True
    public: bool = False


class Refused(Exception):
    """A command that is not carried out; the message is the reply."""


class ChatOps:
    """Slash commands of one chat workspace (one configured connector)."""

    def __init__(
        self,
        connector: str,
        chat: ChatPort,
        policy: PolicyService,
        incidents: IncidentService,
        channels: ChannelMap,
    ) -> None:
        self.connector = connector
        self._chat = chat
        self._policy = policy
        self._incidents = incidents
        self._channels = channels

    def run(self, request: ChatRequest, command: ChatCommand) -> Reply:
        """Carry out a parsed command (blocking: chat lookups and the log's writer)."""
        if isinstance(command, Help):
            return Reply(HELP)
        try:
            decision = self._decision(request.user_id)
            return self._execute(request, command, decision)
        except (Refused, UsageError) as exc:
            return Reply(str(exc), ok=False)
        except Rejected as exc:
            return Reply(_rejection(exc), ok=False)
        except ChatError as exc:
            log.warning("chat call failed during a command: %s", exc)
            return Reply(f"the chat system did not answer ({exc}); nothing was done", ok=False)

    def _decision(self, user_id: str) -> Decision:
        email = self._chat.email_of(user_id)
        if email is None:
            raise Refused(
                "your chat account has no email address Incidents can see, so it cannot "
                "tell who you are; nothing was done"
            )
        decision = self._policy.recent(email)
        if decision is not None:
            return decision
        try:
            return self._policy.decide(email)
        except UnknownSubject:
            raise Refused(
                f"{email} is not a user of Incidents; ask an administrator to add you. "
                "Nothing was done"
            ) from None
        except PolicyUnavailable:
            raise Refused(
                "access could not be decided right now (the policy service is not "
                "answering); nothing was done, try again shortly"
            ) from None

    def _require(self, decision: Decision, action: Action, resource: str) -> None:
        try:
            self._policy.require(decision, action, resource)
        except PolicyDenied as exc:
            raise Refused(f"refused: {exc}. Nothing was done") from None

    def _incident(self, given: str | None, channel_id: str) -> str:
        if given is not None:
            return given
        channel = self._channels.by_channel(self.connector, channel_id)
        if channel is None:
            raise UsageError(
                "this is not an incident channel: name the incident first, "
                "e.g. `/im status INC-12 mitigated`"
            )
        return channel.incident_id

    def _execute(self, request: ChatRequest, command: ChatCommand, decision: Decision) -> Reply:
        actor, seen = decision.subject.id, decision.visibilities
        if isinstance(command, New):
            self._require(decision, Action.INCIDENT_WRITE, "incident")
            declared = self._submit(
                Declare(
                    title=command.title,
                    actor=actor,
                    severity=command.severity,
                    commander=actor,
                    visibilities=seen,
                    idempotency_key=f"chat:{request.request_id}" if request.request_id else None,
                )
            )
            incident = declared.incident
            return Reply(
                f"declared {incident.id} ({incident.severity}): {incident.title}. "
                f"You are the commander; its channel is being created."
            )
        assert not isinstance(command, Help)
        if isinstance(command, Ack) and command.alert is not None:
            return self._ack_alert(request, command.alert, command.incident_id, decision)
        incident_id = self._incident(command.incident_id, request.channel_id)
        resource = f"incident/{incident_id}"
        if isinstance(command, Commander):
            self._require(decision, Action.INCIDENT_WRITE, resource)
            email = self._chat.email_of(command.user_id)
            if email is None:
                raise Refused(
                    f"<@{command.user_id}> has no email address Incidents can see; nothing was done"
                )
            self._submit(AssignRole(incident_id, actor, seen, role="commander", user=email))
            return Reply(f"<@{command.user_id}> is now the commander of {incident_id}")
        if isinstance(command, SetStatus):
            action = (
                Action.INCIDENT_CLOSE if command.status is Status.CLOSED else Action.INCIDENT_WRITE
            )
            self._require(decision, action, resource)
            result = self._submit(ChangeStatus(incident_id, actor, seen, target=command.status))
            return Reply(f"{incident_id} is now {result.incident.status}")
        if isinstance(command, Note):
            self._require(decision, Action.INCIDENT_WRITE, resource)
            self._submit(AddNote(incident_id, actor, seen, text=command.text))
            return Reply(f"note added to {incident_id}")
        assert isinstance(command, Ack)
        self._require(decision, Action.INCIDENT_WRITE, resource)
        self._submit(Acknowledge(incident_id, actor, seen))
        return Reply(f"acknowledged {incident_id}")

    def _ack_alert(
        self, request: ChatRequest, key: str, named: str | None, decision: Decision
    ) -> Reply:
        # In an incident's channel the alert must be that incident's; elsewhere any
        # alert the caller may see.
        incident_id = named
        if incident_id is None:
            channel = self._channels.by_channel(self.connector, request.channel_id)
            incident_id = channel.incident_id if channel is not None else None
        resource = f"incident/{incident_id}" if incident_id else "incident"
        self._require(decision, Action.INCIDENT_WRITE, resource)
        result = self._submit(
            AcknowledgeAlert(key, decision.subject.id, incident_id, decision.visibilities)
        )
        return Reply(f"acknowledged alert {key} on {result.incident.id}")

    def _submit(self, command: Command) -> CommandResult:
        return self._incidents.execute(command)


def _rejection(exc: Rejected) -> str:
    if isinstance(exc, AlertNotFound):
        return f"{exc}; nothing was done (the alert keys are on the incident's alert list)"
    if isinstance(exc, IncidentNotFound):
        return f"there is no incident {exc.incident_id} you may see; nothing was done"
    if isinstance(exc, InvalidTransition):
        return f"{exc}; nothing was done"
    if isinstance(exc, CommandConflict | InvalidCommand):
        return f"{exc}; nothing was done"
    return f"refused: {exc}"
