"""A ``connectors.servicenow`` entry: instance, credentials, resolution codes."""

from __future__ import annotations

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
from incidents.integrations.servicenow.client import ServiceNowAuth, ServiceNowClient
from incidents.integrations.servicenow.mappings import DEFAULTS

KEYS = COMMON_KEYS | {
    "instance_url",
    "username",
    "password",
    "oauth_token",
    "close_code",
    "close_notes",
    "table",
}


def parse_entry(entry: Entry, where: str) -> ParsedConnector:
    """One ServiceNow connection (raises ConnectorsError naming the key at fault)."""
    check_keys(entry, KEYS, where)
    connector = common("servicenow", entry, where, DEFAULTS)
    url = base_url(entry, "instance_url", where)
    username = text(entry, "username", where, required=False)
    password = text(entry, "password", where, required=False)
    token = text(entry, "oauth_token", where, required=False)
    if token is None and (username is None or password is None):
        raise ConnectorsError(f"{where}: give username and password, or oauth_token")
    if token is not None and password is not None:
        raise ConnectorsError(f"{where}.oauth_token: give either oauth_token or a password")
    auth = ServiceNowAuth(username=username, password=password, token=token)
    close_code = text(entry, "close_code", where, required=False) or "Solved (Permanently)"
    close_notes = text(entry, "close_notes", where, required=False) or "Resolved in Incidents"
    table = text(entry, "table", where, required=False) or "incident"
    timeout = number(entry, "timeout_seconds", where, 10.0, 0.5, 120.0)

    def open_client() -> ServiceNowClient:
        return ServiceNowClient(
            url,
            auth,
            table=table,
            close_code=close_code,
            close_notes=close_notes,
            timeout=timeout,
        )

    return ParsedConnector(connector, open_client, url)
