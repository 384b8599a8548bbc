"""Correlation rules from the YAML config, in the overview's shape.

```yaml
correlation:
  windows: {absorb: 2h, quiet: 30m, max_lifetime: 24h}
  severity: {critical: SEV-1, error: SEV-2, warning: SEV-3, info: SEV-4}
  open_incident_at: SEV-3        # alerts this severe or worse open an incident
  fingerprints:
    - service + error_type + time_window
    - name: host-rule
      fields: [alert_rule, host]
      windows: {quiet: 10m}
      auto_mitigate: true
  deduplication:
    - source + origin_id          # exact (always on)
    - fingerprint + time_window   # fuzzy: grouping by the fingerprints above
```

``time_window`` in a fingerprint names the rule's windows rather than a field: an
incident absorbs matching alerts for ``absorb`` after it opens, a silence of ``quiet``
ends the grouping, and no grouping outlives ``max_lifetime``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from incidents.incident.lifecycle import parse_severity

TIME_WINDOW = "time_window"
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS_US = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_DEDUPE_FORMS = {("source", "origin_id"), ("fingerprint", TIME_WINDOW)}


class RulesError(ValueError):
    """The correlation section cannot be used; the message names the bad entry."""


@dataclass(frozen=True, slots=True)
class Windows:
    absorb_us: int = 4 * 3_600_000_000
    quiet_us: int = 30 * 60_000_000
    max_lifetime_us: int = 24 * 3_600_000_000

    def as_dict(self) -> dict[str, float]:
        return {
            "absorb_seconds": self.absorb_us / 1_000_000,
            "quiet_seconds": self.quiet_us / 1_000_000,
            "max_lifetime_seconds": self.max_lifetime_us / 1_000_000,
        }


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    fields: tuple[str, ...]
    windows: Windows = Windows()
    auto_mitigate: bool = False


@dataclass(frozen=True, slots=True)
class CorrelationRules:
    rules: tuple[Rule, ...]
    # Provider severity words -> platform severity.
    severity_map: dict[str, str] = field(default_factory=dict)
    # Alerts at this severity or worse open an incident when nothing absorbs them.
    open_incident_at: str = "SEV-3"
    default_severity: str = "SEV-3"

    def rule(self, name: str | None) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def severity_of(self, raw: object) -> str:
        """The platform severity of a provider's severity word (or SEV-n itself)."""
        if isinstance(raw, str):
            mapped = self.severity_map.get(raw.strip().lower())
            if mapped is not None:
                return mapped
        return parse_severity(raw) or self.default_severity


DEFAULT_SEVERITY_MAP = {
    "critical": "SEV-1",
    "page": "SEV-1",
    "high": "SEV-2",
    "error": "SEV-2",
    "major": "SEV-2",
    "warning": "SEV-3",
    "medium": "SEV-3",
    "minor": "SEV-3",
    "low": "SEV-4",
    "info": "SEV-4",
    "none": "SEV-4",
}

DEFAULT_RULES = CorrelationRules(
    rules=(
        Rule("service-error", ("service", "error_type")),
        Rule("alert-rule-host", ("alert_rule", "host")),
        Rule("alert-rule-service", ("alert_rule", "service")),
    ),
    severity_map=DEFAULT_SEVERITY_MAP,
)


def parse_duration_us(value: object, where: str) -> int:
    """``90s``, ``30m``, ``2h``, ``1d`` or a number of seconds -> microseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value * 1_000_000)
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match:
            amount = float(match.group(1))
            us = int(amount * _UNITS_US[match.group(2) or "s"])
            if us > 0:
                return us
    raise RulesError(f"{where}: {value!r} is not a duration (use 90s, 30m, 2h or 1d)")


def _windows(raw: object, where: str, base: Windows) -> Windows:
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise RulesError(f"{where}: must be a mapping with absorb, quiet, max_lifetime")
    unknown = set(raw) - {"absorb", "quiet", "max_lifetime"}
    if unknown:
        first = sorted(unknown)[0]
        raise RulesError(f"{where}: unknown window {first!r} (absorb, quiet, max_lifetime)")
    return Windows(
        parse_duration_us(raw["absorb"], f"{where}.absorb") if "absorb" in raw else base.absorb_us,
        parse_duration_us(raw["quiet"], f"{where}.quiet") if "quiet" in raw else base.quiet_us,
        parse_duration_us(raw["max_lifetime"], f"{where}.max_lifetime")
        if "max_lifetime" in raw
        else base.max_lifetime_us,
    )


def _fields(raw: object, where: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        items = [part.strip() for part in raw.split("+")]
    elif isinstance(raw, list):
        items = [str(part).strip() for part in raw]
    else:
        raise RulesError(f"{where}: fields must be 'a + b' or a list of field names")
    names = tuple(i for i in items if i != TIME_WINDOW)
    if not names:
        raise RulesError(f"{where}: a fingerprint needs at least one field besides time_window")
    for name in names:
        if not _FIELD.fullmatch(name):
            raise RulesError(f"{where}: {name!r} is not a field name")
    if len(set(names)) != len(names):
        raise RulesError(f"{where}: a field is listed twice")
    return names


def parse_rules(doc: object) -> CorrelationRules:
    """Validate the ``correlation`` section (None gives the defaults)."""
    if doc is None:
        return DEFAULT_RULES
    if not isinstance(doc, dict):
        raise RulesError("correlation: must be a mapping")
    known = {"windows", "severity", "open_incident_at", "fingerprints", "deduplication"}
    unknown = set(doc) - known
    if unknown:
        raise RulesError(
            f"correlation: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(known))})"
        )
    base = _windows(doc.get("windows"), "correlation.windows", Windows())
    severity_map = dict(DEFAULT_SEVERITY_MAP)
    raw_map = doc.get("severity") or {}
    if not isinstance(raw_map, dict):
        raise RulesError("correlation.severity: must map provider severities to SEV-1 ... SEV-4")
    for word, sev in raw_map.items():
        parsed = parse_severity(sev)
        if parsed is None:
            raise RulesError(f"correlation.severity.{word}: {sev!r} is not SEV-1 ... SEV-4")
        severity_map[str(word).lower()] = parsed
    open_at = parse_severity(doc.get("open_incident_at", "SEV-3"))
    if open_at is None:
        raise RulesError("correlation.open_incident_at: must be SEV-1 ... SEV-4")

    rules: list[Rule] = []
    entries = doc.get("fingerprints", [])
    if not isinstance(entries, list):
        raise RulesError("correlation.fingerprints: must be a list")
    for index, entry in enumerate(entries):
        where = f"correlation.fingerprints[{index}]"
        if isinstance(entry, str):
            names = _fields(entry, where)
            rules.append(Rule("+".join(names), names, base))
            continue
        if not isinstance(entry, dict):
            raise RulesError(f"{where}: must be 'a + b + time_window' or a mapping")
        extra = set(entry) - {"name", "fields", "windows", "auto_mitigate"}
        if extra:
            raise RulesError(f"{where}: unknown key {sorted(extra)[0]!r}")
        names = _fields(entry.get("fields"), f"{where}.fields")
        name = str(entry.get("name") or "+".join(names))
        auto = entry.get("auto_mitigate", False)
        if not isinstance(auto, bool):
            raise RulesError(f"{where}.auto_mitigate: must be true or false")
        windows = _windows(entry.get("windows"), f"{where}.windows", base)
        rules.append(Rule(name, names, windows, auto))
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise RulesError(f"correlation.fingerprints: two rules are named {rule.name!r}")
        seen.add(rule.name)

    for index, entry in enumerate(doc.get("deduplication", []) or []):
        form = tuple(p.strip() for p in str(entry).split("+"))
        if form not in _DEDUPE_FORMS:
            raise RulesError(
                f"correlation.deduplication[{index}]: {entry!r} is not supported "
                "(source + origin_id, fingerprint + time_window)"
            )
    return CorrelationRules(tuple(rules), severity_map, open_at)
