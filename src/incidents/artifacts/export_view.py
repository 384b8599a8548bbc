"""Stored exports: the view of the reader an export was made for, and whether another
reader's decision covers it.

An export holds what its requester could read: events of their visibilities, fields
of their data classes, the rest redacted. Stored as an artifact, it may be downloaded
only by a reader who could read at least as much, so the stored bytes never show
anyone more than the decision on their own request would.
"""

from __future__ import annotations

from typing import Any

from incidents.policy.model import Decision


def view_of(decision: Decision) -> dict[str, Any]:
    """The part of a decision that shapes an export (recorded with the stored export)."""
    return {
        "visibilities": sorted(decision.visibilities),
        "data_classes": sorted(decision.data_classes),
        "field_rules": sorted([r.pattern, r.data_class] for r in decision.field_rules),
    }


def covers(decision: Decision, view: object) -> bool:
    """Whether ``decision`` lets its reader see everything an export made for ``view``
    shows: every visibility and data class of it, and no field rule that would classify
    (and so hide from them) a field the export shows plainly."""
    if not isinstance(view, dict):
        return False
    visibilities = view.get("visibilities")
    classes = view.get("data_classes")
    rules = view.get("field_rules")
    if not (isinstance(visibilities, list) and isinstance(classes, list)):
        return False
    if not (decision.visibilities >= set(visibilities) and decision.data_classes >= set(classes)):
        return False
    recorded = {tuple(r) for r in rules} if isinstance(rules, list) else set()
    return all(
        (r.pattern, r.data_class) in recorded or r.data_class in decision.data_classes
        for r in decision.field_rules
    )
