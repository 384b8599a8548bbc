"""Field-level redaction: the one function every exit path uses to hide what a reader may not see.

Sensitive values are found three ways: ``im.data_class`` as a list (the whole ``data``
is of those classes), ``im.data_class`` as a map from class to JSON paths, and the
policy's field rules, which classify untagged fields by name (``*email*`` -> pii).
Each covered value the reader's decision does not open is replaced by the marker.

Redaction fails closed: when a tag cannot be applied precisely (a path that does not
resolve, data that is not JSON, base64 data), the whole ``data`` is replaced instead
of being returned as it is.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from incidents.events.attributes import DATA_CLASSES
from incidents.events.paths import WILDCARD, parse_path
from incidents.policy.model import Decision, FieldRule

# Every class an event may be tagged with: a reader must hold all of them (and any a
# custom policy names) before redaction may be skipped.
ALL_CLASSES = DATA_CLASSES


@dataclass(frozen=True, slots=True)
class _Rules:
    """Field rules of the classes a reader may not read, compiled into one regex each."""

    by_class: tuple[tuple[str, re.Pattern[str]], ...]


def _squash(name: str) -> str:
    # firstName, first_name and first-name all read as "firstname".
    return re.sub(r"[\s_\-]", "", name.lower())


@lru_cache(maxsize=256)
def _compile(rules: tuple[FieldRule, ...], readable: frozenset[str]) -> _Rules:
    grouped: dict[str, list[str]] = {}
    for rule in rules:
        if rule.data_class not in readable:
            grouped.setdefault(rule.data_class, []).append(fnmatch.translate(rule.pattern.lower()))
    return _Rules(tuple((cls, re.compile("|".join(pats))) for cls, pats in grouped.items()))


def _match(rules: _Rules, key: str) -> str | None:
    """The class of the first rule matching ``key`` as written or squashed."""
    lowered = key.lower()
    squashed = _squash(key)
    for cls, pattern in rules.by_class:
        if pattern.match(lowered) or pattern.match(squashed):
            return cls
    return None


def _redact_path(node: Any, parts: list[Any], marker: str) -> bool:
    """Replace what ``parts`` addresses under ``node``; False if it addresses nothing."""
    part, rest = parts[0], parts[1:]
    if part is WILDCARD:
        if not isinstance(node, dict | list) or not node:
            return False
        children = list(node.keys()) if isinstance(node, dict) else range(len(node))
        hit = False
        for child in children:
            if rest:
                hit = _redact_path(node[child], rest, marker) or hit
            else:
                node[child] = marker
                hit = True
        return hit
    if isinstance(node, dict) and isinstance(part, str) and part in node:
        key: Any = part
    elif isinstance(node, list) and isinstance(part, int | str) and str(part).isdigit():
        key = int(part)
        if key >= len(node):
            return False
    else:
        return False
    if not rest:
        node[key] = marker
        return True
    return _redact_path(node[key], rest, marker)


def _redact_by_rules(data: Any, rules: _Rules, decision: Decision) -> bool:
    applied = False
    if isinstance(data, dict):
        for key, value in data.items():
            cls = _match(rules, key)
            if cls is not None:
                data[key] = decision.marker_for(cls)
                applied = True
            else:
                applied = _redact_by_rules(value, rules, decision) or applied
    elif isinstance(data, list):
        for item in data:
            applied = _redact_by_rules(item, rules, decision) or applied
    return applied


def needs_redaction(decision: Decision) -> bool:
    """Whether any class is closed to the reader (else redaction can be skipped).

    Classes named only by a custom policy's field rules count too.
    """
    named = ALL_CLASSES | {rule.data_class for rule in decision.field_rules}
    return not decision.data_classes >= named


def _whole(body: dict[str, Any], out: dict[str, Any], marker: str) -> dict[str, Any]:
    # Everything that carries the event's content goes, custom extensions included.
    out.pop("data_base64", None)
    out["data"] = marker
    if body.get("ext"):
        out["ext"] = {name: marker for name in body["ext"]}
    return out


def redact_body(body: dict[str, Any], decision: Decision) -> tuple[dict[str, Any], bool]:
    """Return the body with every value the reader may not read replaced, and whether any was.

    ``body`` is the stored body (``data``, ``data_base64``, ``data_class``, ``ext``, ...);
    it is not modified.
    """
    if not needs_redaction(decision):
        return body, False
    readable = decision.data_classes
    tags = body.get("data_class")
    out = dict(body)
    has_content = "data" in body or "data_base64" in body

    if isinstance(tags, list):
        closed = [cls for cls in tags if cls not in readable]
        if closed and (has_content or body.get("ext")):
            return _whole(body, out, decision.marker_for(closed[0])), True

    applied = False
    if isinstance(tags, dict):
        closed_paths = [(cls, paths) for cls, paths in tags.items() if cls not in readable]
        if closed_paths:
            data = body.get("data")
            if not isinstance(data, dict | list):
                # Base64 or text data cannot be redacted field by field: all of it goes.
                if has_content:
                    return _whole(body, out, decision.marker_for(closed_paths[0][0])), True
            else:
                data = copy.deepcopy(data)
                for cls, paths in closed_paths:
                    for path in paths:
                        parts = parse_path(path)
                        marker = decision.marker_for(cls)
                        if not parts:  # "$" or unparseable: the whole data
                            return _whole(body, out, marker), True
                        if not _redact_path(data, parts, marker):
                            # A tag that addresses nothing may be a typo hiding real
                            # data: fail closed.
                            return _whole(body, out, marker), True
                out["data"] = data
                applied = True

    rules = _compile(decision.field_rules, readable)
    if rules.by_class:
        if isinstance(out.get("data"), dict | list):
            data = out["data"] if applied else copy.deepcopy(out["data"])
            if _redact_by_rules(data, rules, decision):
                out["data"] = data
                applied = True
        ext = body.get("ext")
        if ext:
            redacted_ext = dict(ext)
            if _redact_by_rules(redacted_ext, rules, decision):
                out["ext"] = redacted_ext
                applied = True
    if not applied:
        return body, False
    return out, True
