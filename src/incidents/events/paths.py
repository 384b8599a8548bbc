"""The JSON paths an ``im.data_class`` map may name inside an event's ``data``."""

from __future__ import annotations

import re
from typing import Any

# Stands for "every key or item" at one level of a path.
WILDCARD: Any = object()

_SEGMENT = re.compile(r"\[(\d+|\*)\]|\.?([^.\[\]]+)")


def parse_path(path: str) -> list[Any] | None:
    """Split a tagged path into keys, list indexes and wildcards; None if it is malformed.

    Accepts ``customer.email``, ``$.customer.email``, ``contacts[0].phone``,
    ``contacts[*].phone``, ``contacts.*.phone`` and JSON pointers (``/customer/email``).
    ``$`` alone is the whole ``data`` and gives an empty list.
    """
    path = path.strip()
    if path.startswith("/"):
        return [
            WILDCARD if p == "*" else p.replace("~1", "/").replace("~0", "~")
            for p in path.split("/")[1:]
        ]
    if path.startswith("$"):
        path = path[1:]
    parts: list[Any] = []
    pos = 0
    while pos < len(path):
        match = _SEGMENT.match(path, pos)
        if match is None or match.end() == pos:
            return None
        index, key = match.groups()
        if index is not None:
            parts.append(WILDCARD if index == "*" else int(index))
        else:
            parts.append(WILDCARD if key == "*" else key)
        pos = match.end()
    return parts
