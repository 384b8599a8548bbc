"""The event type registry: canonical ``im.*`` names, ``com.incidents.*.v1`` aliases, titles.

The platform emits the Timeline guide's ``im.*`` names. The architecture overview's
``com.incidents.*.v1`` names are accepted on input and stored under the ``im.*`` name
of the same meaning.
"""

from __future__ import annotations

import re

# Canonical type -> the human title used in reports.
TITLES: dict[str, str] = {
    "im.incident.declare": "Incident Declared",
    "im.incident.acknowledge": "Incident Acknowledged",
    "im.incident.escalate": "Incident Escalated",
    "im.incident.state_change": "Status Changed",
    "im.incident.mitigate": "Incident Mitigated",
    "im.incident.resolve": "Incident Resolved",
    "im.incident.close": "Incident Closed",
    "im.incident.cancel": "Incident Canceled",
    "im.incident.reopen": "Incident Reopened",
    "im.incident.assign": "Incident Assigned",
    "im.incident.role.assign": "Role Assigned",
    "im.incident.update": "Incident Updated",
    "im.alert.trigger": "Alert Triggered",
    "im.alert.acknowledge": "Alert Acknowledged",
    "im.alert.resolve": "Alert Resolved",
    "im.note.add": "Note Added",
    "im.status_update.post": "Status Update Posted",
    "im.runbook.execute": "Runbook Executed",
    "im.servicenow.sync": "ServiceNow Ticket Synchronized",
    "im.jira.sync": "Jira Issue Synchronized",
    "im.slack.message": "Slack Message Linked",
    "im.chat.message": "Chat Message",
}

# The overview's names, exactly as it lists them.
_ALIASES: dict[str, str] = {
    "com.incidents.declared.v1": "im.incident.declare",
    "com.incidents.state_change.v1": "im.incident.state_change",
    "com.incidents.assigned.v1": "im.incident.assign",
    "com.incidents.role.assigned.v1": "im.incident.role.assign",
    "com.incidents.note_added.v1": "im.note.add",
    "com.incidents.resolved.v1": "im.incident.resolve",
    "com.incidents.closed.v1": "im.incident.close",
    "com.incidents.chat.message.v1": "im.chat.message",
    "com.incidents.comms.update_sent.v1": "im.status_update.post",
    "com.incidents.comms.escalation.v1": "im.incident.escalate",
}

# com.incidents.provider.<provider>.<action>.v1 -> im.<provider>.<verb>
_PROVIDER_ALIAS = re.compile(r"^com\.incidents\.provider\.([a-z0-9_]+)\.([a-z_]+)\.v1$")
_PROVIDER_ACTIONS = {
    "ingested": "ingest",
    "sync_requested": "sync_request",
    "sync_completed": "sync",
    "ack": "acknowledge",
}


def canonical_type(event_type: str) -> str:
    """The ``im.*`` name of an event type; types outside both namespaces pass unchanged."""
    alias = _ALIASES.get(event_type)
    if alias is not None:
        return alias
    match = _PROVIDER_ALIAS.fullmatch(event_type)
    if match is not None:
        provider, action = match.groups()
        if action == "ack":
            return "im.alert.acknowledge"
        verb = _PROVIDER_ACTIONS.get(action)
        if verb is not None:
            return f"im.{provider}.{verb}"
    return event_type


def human_title(event_type: str) -> str:
    """A report heading for an event type ("Incident Declared" for ``im.incident.declare``)."""
    known = TITLES.get(event_type)
    if known is not None:
        return known
    # im.foo.bar_baz -> "Foo Bar Baz": readable even for types nobody registered.
    parts = event_type.removeprefix("im.").replace("_", ".").split(".")
    return " ".join(p.capitalize() for p in parts if p) or event_type
