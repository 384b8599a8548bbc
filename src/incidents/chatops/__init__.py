"""ChatOps: slash commands, per-incident channels and chat messages on the timeline.

The logic here knows no chat vendor: it talks to a :class:`~incidents.chatops.port.ChatPort`
that a vendor adapter (Slack, in :mod:`incidents.integrations.slack`) implements.
"""
