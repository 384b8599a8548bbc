"""A ``connectors.jira`` entry: site, account, project, webhook secret."""

from __future__ import annotations

import re

from incidents.integrations.connector_config import (
    COMMON_KEYS,
    ConnectorsError,
    Entry,
    ParsedConnector,
    base_url,
    check_keys,
    common,
    number,
    text,
)
from incidents.integrations.jira.client import JiraAuth, JiraClient
from incidents.integrations.jira.mappings import DEFAULTS

KEYS = COMMON_KEYS | {"base_url", "email", "api_token", "project", "webhook_secret", "issue_type"}
_PROJECT = re.compile(r"^[A-Z][A-Z0-9_]{1,9}$")
MIN_SECRET_CHARS = 16


def parse_entry(entry: Entry, where: str) -> ParsedConnector:
    """One Jira Cloud connection (raises ConnectorsError naming the key at fault)."""
    check_keys(entry, KEYS, where)
    connector = common("jira", entry, where, DEFAULTS)
    url = base_url(entry, "base_url", where)
    email = text(entry, "email", where)
    token = text(entry, "api_token", where)
    project = text(entry, "project", where)
    assert email is not None and token is not None and project is not None
    if not _PROJECT.match(project):
        raise ConnectorsError(f"{where}.project: a Jira project key such as OPS")
    secret = text(entry, "webhook_secret", where, required=False)
    if secret is not None and len(secret) < MIN_SECRET_CHARS:
        raise ConnectorsError(f"{where}.webhook_secret: at least {MIN_SECRET_CHARS} characters")
    issue_type = text(entry, "issue_type", where, required=False) or "Task"
    timeout = number(entry, "timeout_seconds", where, 10.0, 0.5, 120.0)

    def open_client() -> JiraClient:
        return JiraClient(
            url, JiraAuth(email, token), project, issue_type=issue_type, timeout=timeout
        )

    return ParsedConnector(connector, open_client, url, webhook_secret=secret)
