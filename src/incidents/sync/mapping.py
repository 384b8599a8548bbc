"""Field mappings: which incident field goes to which ticket field, who owns it, and
how a disagreement is settled."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# The incident fields a mapping may name (assignee is the first assignee).
INTERNAL_FIELDS = ("title", "description", "severity", "status", "assignee")


class Owner(StrEnum):
    """Which side is the source of truth for a field."""

    INTERNAL = "internal"
    EXTERNAL = "external"
    BIDIRECTIONAL = "bidirectional"


class Policy(StrEnum):
    """How a field edited on both sides since the last sync is settled."""

    INTERNAL_WINS = "internal_wins"
    EXTERNAL_WINS = "external_wins"
    MOST_RECENT_ALLOWED = "most_recent_allowed"
    STATE_MACHINE = "state_machine"
    MANUAL = "manual"


class MappingError(ValueError):
    """A field mapping that cannot be used; the message names the key at fault."""


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """One synchronised field."""

    name: str
    internal_field: str
    external_field: str
    owner: Owner = Owner.BIDIRECTIONAL
    policy: Policy = Policy.MOST_RECENT_ALLOWED
    # Internal value -> external value (severity and status codes); values not named
    # pass through unchanged. The reverse map takes the first internal value per
    # external value.
    value_mapping: Mapping[str, str] = field(default_factory=dict)

    def to_external(self, value: str | None) -> str | None:
        if value is None:
            return None
        return self.value_mapping.get(value, value)

    def to_internal(self, value: object) -> str | None:
        """The incident value for a ticket value; None when it maps to nothing."""
        if value is None or value == "":
            return None
        text = str(value)
        if not self.value_mapping:
            return text
        for internal, external in self.value_mapping.items():
            if external == text:
                return internal
        return None

    @property
    def pushes(self) -> bool:
        return self.owner is not Owner.EXTERNAL

    @property
    def pulls(self) -> bool:
        return self.owner is not Owner.INTERNAL


def _mapping(name: str, raw: object, defaults: FieldMapping | None, where: str) -> FieldMapping:
    if not isinstance(raw, dict):
        raise MappingError(f"{where}.{name}: expected a mapping")
    known = {"internal_field", "external_field", "source_of_truth", "conflict_policy"}
    known.add("value_mapping")
    unknown = sorted(set(raw) - known)
    if unknown:
        raise MappingError(f"{where}.{name}.{unknown[0]}: unknown key; known: {sorted(known)}")
    internal = raw.get("internal_field", defaults.internal_field if defaults else name)
    if internal not in INTERNAL_FIELDS:
        raise MappingError(
            f"{where}.{name}.internal_field: must be one of {', '.join(INTERNAL_FIELDS)}, "
            f"got {internal!r}"
        )
    external = raw.get("external_field", defaults.external_field if defaults else None)
    if not isinstance(external, str) or not external:
        raise MappingError(f"{where}.{name}.external_field: a ticket field name is required")
    try:
        owner = Owner(raw.get("source_of_truth", defaults.owner if defaults else "bidirectional"))
    except ValueError:
        raise MappingError(
            f"{where}.{name}.source_of_truth: must be one of {', '.join(o.value for o in Owner)}"
        ) from None
    default_policy = defaults.policy if defaults else Policy.MOST_RECENT_ALLOWED
    try:
        policy = Policy(raw.get("conflict_policy", default_policy))
    except ValueError:
        raise MappingError(
            f"{where}.{name}.conflict_policy: must be one of {', '.join(p.value for p in Policy)}"
        ) from None
    values: Any = raw.get("value_mapping", dict(defaults.value_mapping) if defaults else {})
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str | int) for k, v in values.items()
    ):
        raise MappingError(f"{where}.{name}.value_mapping: expected a map of strings")
    return FieldMapping(
        name, internal, external, owner, policy, {k: str(v) for k, v in values.items()}
    )


def parse_field_mappings(
    raw: object, defaults: tuple[FieldMapping, ...], where: str
) -> tuple[FieldMapping, ...]:
    """The connector's mappings: the vendor defaults, overridden or extended by
    ``field_mappings`` (a mapping may be dropped with ``name: null``)."""
    if raw is None:
        return defaults
    if not isinstance(raw, dict):
        raise MappingError(f"{where}: expected a mapping of field names")
    by_name = {m.name: m for m in defaults}
    for name, entry in raw.items():
        if entry is None:
            by_name.pop(str(name), None)
            continue
        by_name[str(name)] = _mapping(str(name), entry, by_name.get(str(name)), where)
    internal = [m.internal_field for m in by_name.values() if m.pulls]
    doubled = {f for f in internal if internal.count(f) > 1}
    if doubled:
        raise MappingError(
            f"{where}: {sorted(doubled)[0]} is pulled from two ticket fields; make all but "
            "one of them source_of_truth: internal"
        )
    return tuple(by_name.values())
