"""Policy decision points: Rego evaluated in-process (regopy), or a remote OPA server.

Both answer the same question, ``data.incidents.authz.decision`` for one subject, and
both fail closed: anything but a well-formed answer raises :class:`PolicyUnavailable`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any, Protocol

import httpx

from incidents.config import mask_url_password
from incidents.policy.model import Decision, FieldRule, PolicyUnavailable, Subject

log = logging.getLogger(__name__)

SHIPPED_POLICIES = Path(__file__).with_name("policies")
DECISION_PATH = "incidents/authz/decision"
_QUERY = "data." + DECISION_PATH.replace("/", ".")


class DecisionPoint(Protocol):
    """Decides what a subject may do and see."""

    def decide(self, subject: Subject) -> Decision: ...


def decision_from_document(subject: Subject, document: Any) -> Decision:
    """Turn the policy's ``decision`` document into a :class:`Decision` (fail closed)."""
    if not isinstance(document, dict):
        raise PolicyUnavailable("the policy returned no decision document")
    try:
        rules = tuple(
            FieldRule(str(rule["pattern"]), str(rule["class"]))
            for rule in document.get("field_rules", [])
        )
        markers = document.get("class_markers") or {}
        return Decision(
            subject=subject,
            actions=frozenset(str(a) for a in document.get("actions", [])),
            visibilities=frozenset(str(v) for v in document.get("visibilities", [])),
            data_classes=frozenset(str(c) for c in document.get("data_classes", [])),
            field_rules=rules,
            marker=str(document.get("marker") or "[REDACTED]"),
            class_markers={str(k): str(v) for k, v in markers.items()},
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise PolicyUnavailable(f"the policy's decision document is malformed: {exc}") from None


class EmbeddedDecisionPoint:
    """Rego policies evaluated in-process with regopy.

    Policies come from the package, or from ``policy_dir`` when given; a change to any
    ``.rego`` file there is picked up on the next decision. With ``modules`` (a policy
    bundle's files by name, checked against its digest) the policies are held in
    memory and never reloaded: nothing on disk can change them under a running server.
    Decisions depend only on the subject and the policy, so they are cached per subject
    until the policy changes.
    """

    def __init__(
        self,
        policy_dir: Path | None = None,
        cache_size: int = 4096,
        *,
        modules: Mapping[str, str] | None = None,
    ) -> None:
        self._modules = dict(modules) if modules is not None else None
        self._dir = policy_dir or SHIPPED_POLICIES
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, float, int], ...] | None = None
        self._interpreter: Any = None
        self._cache: OrderedDict[str, Decision] = OrderedDict()
        self._cache_size = cache_size

    def _files(self) -> list[Path]:
        try:
            return sorted(p for p in self._dir.glob("*.rego") if p.is_file())
        except OSError:
            return []

    def _current_stamp(self) -> tuple[tuple[str, float, int], ...]:
        stamp = []
        for path in self._files():
            try:
                info = path.stat()
            except OSError:
                continue
            stamp.append((path.name, info.st_mtime, info.st_size))
        return tuple(stamp)

    def _sources(self) -> list[tuple[str, str]]:
        """The policies as (file name, text), in name order."""
        if self._modules is not None:
            return sorted(self._modules.items())
        files = self._files()
        if not files:
            raise PolicyUnavailable(f"no .rego policy files in {self._dir}")
        return [(path.name, path.read_text()) for path in files]

    def _load(self, stamp: tuple[tuple[str, float, int], ...]) -> None:
        from regopy import Interpreter

        sources = self._sources()
        if not sources:
            raise PolicyUnavailable("the policy bundle holds no .rego policy file")
        interpreter = Interpreter()
        for name, text in sources:
            try:
                interpreter.add_module(PurePath(name).stem, text)
            except Exception as exc:
                raise PolicyUnavailable(f"policy {name} cannot be loaded: {exc}") from None
        self._interpreter = interpreter
        self._stamp = stamp
        self._cache.clear()
        where = "a policy bundle" if self._modules is not None else self._dir
        log.info("loaded %d policy files from %s", len(sources), where)

    def decide(self, subject: Subject) -> Decision:
        key = json.dumps(subject.as_input(), sort_keys=True)
        with self._lock:
            # The shipped policies and a bundle's cannot change under a running process:
            # no stat calls, no reload.
            if self._interpreter is None or (
                self._modules is None and self._dir is not SHIPPED_POLICIES
            ):
                stamp = self._current_stamp()
                if stamp != self._stamp or self._interpreter is None:
                    self._load(stamp)
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            try:
                self._interpreter.set_input_term(json.dumps({"subject": subject.as_input()}))
                output = self._interpreter.query(_QUERY)
                answer = json.loads(str(output))
            except Exception as exc:
                raise PolicyUnavailable(f"the policy could not be evaluated: {exc}") from None
            expressions = answer.get("expressions") if isinstance(answer, dict) else None
            if not expressions:
                raise PolicyUnavailable("the policy defines no data.incidents.authz.decision")
            decision = decision_from_document(subject, expressions[0])
            self._cache[key] = decision
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return decision


class RemoteDecisionPoint:
    """Decisions from an OPA server's data API (``POST /v1/data/incidents/authz/decision``).

    Not cached: if OPA stops answering, requests fail closed at once.
    """

    def __init__(self, base_url: str, timeout: float = 2.0) -> None:
        self._url = f"{base_url.rstrip('/')}/v1/data/{DECISION_PATH}"
        # What messages show: credentials in the URL stay out of answers and logs.
        self._shown = mask_url_password(self._url)
        self._client = httpx.Client(timeout=timeout)

    def decide(self, subject: Subject) -> Decision:
        try:
            resp = self._client.post(self._url, json={"input": {"subject": subject.as_input()}})
        except httpx.HTTPError as exc:
            raise PolicyUnavailable(
                f"OPA at {self._shown} is not answering ({type(exc).__name__})"
            ) from None
        if resp.status_code != 200:
            raise PolicyUnavailable(f"OPA at {self._shown} answered HTTP {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            raise PolicyUnavailable(f"OPA at {self._shown} did not answer JSON") from None
        if not isinstance(body, dict) or "result" not in body:
            raise PolicyUnavailable(
                f"OPA at {self._shown} has no decision: is the policy bundle loaded?"
            )
        return decision_from_document(subject, body["result"])

    def close(self) -> None:
        self._client.close()
