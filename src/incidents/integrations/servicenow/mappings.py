"""The field mappings a ServiceNow connector starts from."""

from __future__ import annotations

from incidents.sync.mapping import FieldMapping, Owner, Policy

# ServiceNow incident states: 1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed,
# 8 Canceled. Mitigated has no state of its own; On Hold is the nearest (work paused).
STATES = {
    "draft": "1",
    "open": "2",
    "mitigated": "3",
    "resolved": "6",
    "closed": "7",
    "canceled": "8",
}
# Impact and urgency: 1 High, 2 Medium, 3 Low (priority is computed from both).
IMPACT = {"SEV-1": "1", "SEV-2": "2", "SEV-3": "3"}
URGENCY = {"SEV-1": "1", "SEV-2": "1", "SEV-3": "2", "SEV-4": "3"}

DEFAULTS: tuple[FieldMapping, ...] = (
    FieldMapping("title", "title", "short_description"),
    FieldMapping("description", "description", "description"),
    FieldMapping("severity", "severity", "impact", Owner.INTERNAL, Policy.INTERNAL_WINS, IMPACT),
    FieldMapping("urgency", "severity", "urgency", Owner.INTERNAL, Policy.INTERNAL_WINS, URGENCY),
    FieldMapping("status", "status", "state", Owner.BIDIRECTIONAL, Policy.STATE_MACHINE, STATES),
    # A reference to sys_user: the client names people by email on our side.
    FieldMapping("assignee", "assignee", "assigned_to"),
)
