"""Field-level redaction: the one function every exit path uses to hide what a reader may not see.

Sensitive values are found three ways: ``im.data_class`` as a list (the whole ``data``
is of those classes), ``im.data_class`` as a map from class to JSON paths, and the
policy's field rules, which classify untagged fields by name (``*email*`` -> pii).
Each covered value the reader's decision does not open is replaced by the marker.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from incidents.policy.model import Decision, FieldRule

ALL_CLASSES = frozenset({"pii", "phi", "financial", "legal_hold"})


@dataclass(frozen=True, slots=True)
class _Rules:
    """Field rules of the classes a reader may not read, compiled into one regex each."""

    by_class: tuple[tuple[str, re.Pattern[str]], ...]


@lru_cache(maxsize=256)
def _compile(rules: tuple[FieldRule, ...], readable: frozenset[str]) -> _Rules:
    grouped: dict[str, list[str]] = {}
    for rule in rules:
        if rule.data_class not in readable:
            grouped.setdefault(rule.data_class, []).append(fnmatch.translate(rule.pattern.lower()))
    return _Rules(tuple((cls, re.compile("|".join(pats))) for cls, pats in grouped.items()))


def _split_path(path: str) -> list[str]:
    # Accept "customer.email", "$.customer.email" and "/customer/email".
    path = path.strip()
    if path.startswith("$."):
        path = path[2:]
    if path.startswith("/"):
        return [p for p in path.split("/") if p]
    return [p for p in path.split(".") if p]


def _redact_path(data: Any, parts: list[str], marker: str) -> bool:
    node = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, dict):
            if part not in node:
                return False
            if last:
                node[part] = marker
                return True
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            index = int(part)
            if last:
                node[index] = marker
                return True
            node = node[index]
        else:
            return False
    return False


def _redact_by_rules(data: Any, rules: _Rules, decision: Decision) -> bool:
    applied = False
    if isinstance(data, dict):
        for key, value in data.items():
            lowered = key.lower()
            for cls, pattern in rules.by_class:
                if pattern.match(lowered):
                    data[key] = decision.marker_for(cls)
                    applied = True
                    break
            else:
                applied = _redact_by_rules(value, rules, decision) or applied
    elif isinstance(data, list):
        for item in data:
            applied = _redact_by_rules(item, rules, decision) or applied
    return applied


def needs_redaction(decision: Decision) -> bool:
    """Whether any class is closed to the reader (else redaction can be skipped)."""
    return not decision.data_classes >= ALL_CLASSES


def redact_body(body: dict[str, Any], decision: Decision) -> tuple[dict[str, Any], bool]:
    """Return the body with every value the reader may not read replaced, and whether any was.

    ``body`` is the stored body (``data``, ``data_base64``, ``data_class``, ...); it is
    not modified.
    """
    if not needs_redaction(decision) or ("data" not in body and "data_base64" not in body):
        return body, False
    readable = decision.data_classes
    tags = body.get("data_class")
    out = dict(body)

    if isinstance(tags, list):
        closed = [cls for cls in tags if cls not in readable]
        if closed:
            marker = decision.marker_for(closed[0])
            out.pop("data_base64", None)
            data = body.get("data")
            if isinstance(data, dict):
                out["data"] = {key: marker for key in data}
            elif isinstance(data, list):
                out["data"] = [marker for _ in data]
            else:
                out["data"] = marker
            return out, True

    if "data" not in body:
        return body, False
    data = copy.deepcopy(body["data"])
    applied = False
    if isinstance(tags, dict):
        for cls, paths in tags.items():
            if cls in readable:
                continue
            for path in paths:
                applied = _redact_path(data, _split_path(path), decision.marker_for(cls)) or applied
    rules = _compile(decision.field_rules, readable)
    if rules.by_class:
        applied = _redact_by_rules(data, rules, decision) or applied
    if not applied:
        return body, False
    out["data"] = data
    return out, True
