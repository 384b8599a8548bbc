"""The policy enforcement point's two halves: decide (once per request), then require.

Every read and write path asks :meth:`PolicyService.decide` for the caller's
:class:`Decision` and :meth:`PolicyService.require` for the action at hand; what is
returned is then filtered (visibility, in SQL) and redacted (data classes) with that
one decision. Decisions are logged for audit without any event content.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import Protocol

from opentelemetry.trace import StatusCode, Tracer

from incidents.policy.decision_point import DecisionPoint, EmbeddedDecisionPoint
from incidents.policy.model import REQUIRED_ROLE, Action, Decision, PolicyUnavailable, Subject

audit = logging.getLogger("incidents.audit")

# Who readiness probes ask about; never a directory user (no '@').
READINESS_SUBJECT = "readiness-probe"

PDP_UNAVAILABLE = (
    "Policy Decision Point not responding: the request was refused because access "
    "could not be decided (check the policy service, its bundle and connectivity)"
)


class UnknownSubject(PermissionError):
    """The caller authenticated but is not an active user of the directory."""


# What each action lets its holder do, as a refusal names it.
_PURPOSE = {
    Action.READ: "read timelines",
    Action.APPEND: "append events",
    Action.EXPORT: "export timelines",
    Action.VERIFY: "verify timelines",
    Action.ADMIN: "administer users, groups and tokens",
    Action.INCIDENT_READ: "read incidents",
    Action.INCIDENT_WRITE: "change incidents",
    Action.INCIDENT_CLOSE: "close incidents",
    Action.LEGAL_HOLD: "place and release legal holds",
    Action.ERASE: "erase fields of stored events",
    Action.ARTIFACT_WRITE: "attach files to incidents",
}


class PolicyDenied(PermissionError):
    """The decision does not allow the action; the message names the missing role."""

    def __init__(self, action: Action, subject: Subject) -> None:
        self.action = action
        self.role = REQUIRED_ROLE[action]
        verb = _PURPOSE[action]
        # Only an administrator can run the grant command: anyone else is told whom
        # to ask, not a command that would be refused too.
        if REQUIRED_ROLE[Action.ADMIN] in subject.roles:
            how = f"grant it with: incidents user roles add --email {subject.id} --role {self.role}"
        else:
            how = f"ask an administrator of this server to grant you the {self.role} role"
        super().__init__(f"{subject.id} lacks the {self.role} role needed to {verb}; {how}")


class SubjectLookup(Protocol):
    """Where a caller's roles, attributes and clearance come from (the directory)."""

    def subject_for(self, email: str, extra_groups: Iterable[str] = ()) -> Subject | None:
        """The subject for an active user, or None if unknown or deactivated."""
        ...


class PolicyService:
    """Takes decisions for subjects and records them for audit."""

    def __init__(
        self,
        directory: SubjectLookup,
        pdp: DecisionPoint,
        tracer: Tracer,
        cache_seconds: float = 5.0,
    ) -> None:
        self._directory = directory
        self._pdp = pdp
        self._tracer = tracer
        # Only in-process decisions are reused across requests: a remote PDP that
        # stops answering must turn every request away at once (fail closed).
        self._cacheable = isinstance(pdp, EmbeddedDecisionPoint)
        self._cache_seconds = cache_seconds
        self._recent: dict[str, tuple[Decision, float]] = {}
        self._lock = threading.Lock()

    @property
    def reuses_decisions(self) -> bool:
        """Whether :meth:`recent` can answer (decisions are cached for a while)."""
        return self._cacheable

    def invalidate(self) -> None:
        """Forget reused decisions (after a directory change)."""
        with self._lock:
            self._recent.clear()

    @staticmethod
    def _key(subject_id: str, extra_groups: Iterable[str]) -> str:
        return json.dumps([subject_id.lower(), sorted(extra_groups)])

    def recent(self, subject_id: str, extra_groups: Iterable[str] = ()) -> Decision | None:
        """A decision taken for the same subject moments ago, if it may be reused."""
        if not self._cacheable:
            return None
        entry = self._recent.get(self._key(subject_id, extra_groups))
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        return None

    def decide(self, subject_id: str, extra_groups: Iterable[str] = ()) -> Decision:
        """The decision for one caller; raises :class:`PolicyUnavailable` or
        :class:`UnknownSubject`."""
        groups = tuple(extra_groups)
        with self._tracer.start_as_current_span("timeline.policy.evaluate") as span:
            subject = self._directory.subject_for(subject_id, groups)
            if subject is None:
                raise UnknownSubject(
                    f"{subject_id} is not an active user; an administrator can add them "
                    "(incidents admin token create, or SCIM /api/v1/users)"
                )
            try:
                decision = self._pdp.decide(subject)
            except PolicyUnavailable as exc:
                span.set_status(StatusCode.ERROR, str(exc))
                audit.warning(
                    "policy decision unavailable",
                    extra={"subject": subject_id, "outcome": "unavailable"},
                )
                raise
            span.set_attribute("policy.actions", len(decision.actions))
        if self._cacheable:
            with self._lock:
                if len(self._recent) > 10_000:
                    self._recent.clear()
                self._recent[self._key(subject_id, groups)] = (
                    decision,
                    time.monotonic() + self._cache_seconds,
                )
        return decision

    def ping(self) -> None:
        """Raise :class:`PolicyUnavailable` unless the decision point decides (readiness).

        Asks for a subject with no grants: it exercises the policy (or OPA) without
        touching the directory.
        """
        self._pdp.decide(Subject(id=READINESS_SUBJECT))

    def decide_for(self, subject: Subject) -> Decision:
        """The decision for a subject the platform itself describes (not from the
        directory): the audience of a chat channel. Raises :class:`PolicyUnavailable`."""
        with self._tracer.start_as_current_span("timeline.policy.evaluate"):
            return self._pdp.decide(subject)

    def require(self, decision: Decision, action: Action, resource: str) -> None:
        """Allow ``action`` on ``resource`` or raise :class:`PolicyDenied`; audit either way."""
        allowed = decision.allows(action)
        audit.info(
            "policy decision subject=%s action=%s resource=%r outcome=%s",
            decision.subject.id,
            action.value,
            resource,
            "allow" if allowed else "deny",
            extra={
                "subject": decision.subject.id,
                "action": action.value,
                "resource": resource,
                "outcome": "allow" if allowed else "deny",
            },
        )
        if not allowed:
            raise PolicyDenied(action, decision.subject)


__all__ = [
    "PDP_UNAVAILABLE",
    "PolicyDenied",
    "PolicyService",
    "PolicyUnavailable",
    "UnknownSubject",
]
