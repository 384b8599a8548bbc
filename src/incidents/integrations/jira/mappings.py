"""The field mappings a Jira connector starts from."""

from __future__ import annotations

from incidents.sync.mapping import FieldMapping, Owner, Policy

# Target status names of the default Jira Software workflow (To Do, In Progress, Done).
# Several incident statuses share one Jira status; the first listed is taken back.
STATUSES = {
    "draft": "To Do",
    "open": "In Progress",
    "mitigated": "In Progress",
    "resolved": "Done",
    "closed": "Done",
    "canceled": "Done",
}
PRIORITIES = {"SEV-1": "Highest", "SEV-2": "High", "SEV-3": "Medium", "SEV-4": "Low"}

DEFAULTS: tuple[FieldMapping, ...] = (
    FieldMapping("title", "title", "summary"),
    FieldMapping("description", "description", "description"),
    FieldMapping(
        "severity", "severity", "priority", Owner.INTERNAL, Policy.INTERNAL_WINS, PRIORITIES
    ),
    FieldMapping("status", "status", "status", Owner.BIDIRECTIONAL, Policy.STATE_MACHINE, STATUSES),
    # An accountId in Jira: the client names people by email on our side.
    FieldMapping("assignee", "assignee", "assignee"),
)
