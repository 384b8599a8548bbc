"""The ``connectors: slack:`` section of ``IM_CONFIG``.

```yaml
connectors:
  slack:
    - name: acme
      bot_token: xoxb-...
      signing_secret: ...
      api_url: https://slack.com/api/      # a local server in tests
      invite_roles: [incident.commander]   # directory roles invited to every channel
      app_url: https://incidents.example.com   # links in topics and pins
```
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from incidents.integrations.credentials import IntegrationsError, entry_name
from incidents.policy.model import ROLES

PROVIDER_NAME = "slack"
DEFAULT_API_URL = "https://slack.com/api/"
_KEYS = (
    "name",
    "bot_token",
    "signing_secret",
    "api_url",
    "invite_roles",
    "app_url",
    "workspace_url",
)


@dataclass(frozen=True, slots=True)
class SlackConnector:
    """One Slack workspace (app installation)."""

    name: str
    bot_token: str
    signing_secret: str
    api_url: str = DEFAULT_API_URL
    invite_roles: tuple[str, ...] = ()
    # Where Incidents is reached, for the status board and timeline links.
    app_url: str = "http://127.0.0.1:8080"
    # The workspace's address, for message permalinks.
    workspace_url: str = "https://slack.com"

    @property
    def provider(self) -> str:
        return PROVIDER_NAME

    @property
    def destination(self) -> str:
        """Its outbox destination (the ``destination`` column of its rows)."""
        return f"{PROVIDER_NAME}:{self.name}"

    def __repr__(self) -> str:
        # Never print the token or the signing secret, even in a traceback.
        return f"SlackConnector({self.name}, api_url={self.api_url!r})"


def _url(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise IntegrationsError(f"{where}: must be an http:// or https:// URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise IntegrationsError(f"{where}: must be an http:// or https:// URL, got {value!r}")
    return value


def _secret(entry: dict[str, Any], key: str, where: str, minimum: int) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise IntegrationsError(f"{where}.{key}: missing (each Slack connector needs one)")
    if len(value.strip()) < minimum:
        raise IntegrationsError(f"{where}.{key}: must be at least {minimum} characters")
    return value.strip()


def parse_slack(doc: object) -> tuple[SlackConnector, ...]:
    """Validate ``connectors.slack``; raises :class:`IntegrationsError` naming the key."""
    if doc is None:
        return ()
    if not isinstance(doc, list):
        raise IntegrationsError("connectors.slack: must be a list of workspaces")
    out: list[SlackConnector] = []
    seen: set[str] = set()
    for index, entry in enumerate(doc):
        where = f"connectors.slack[{index}]"
        if not isinstance(entry, dict):
            raise IntegrationsError(f"{where}: must be a mapping with name, bot_token, ...")
        unknown = sorted(set(entry) - set(_KEYS))
        if unknown:
            raise IntegrationsError(
                f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_KEYS)})"
            )
        name = entry_name(entry, where, seen)
        token = _secret(entry, "bot_token", where, 10)
        if not token.startswith("xox"):
            raise IntegrationsError(f"{where}.bot_token: a Slack bot token starts with xoxb-")
        secret = _secret(entry, "signing_secret", where, 16)
        api_url = _url(entry.get("api_url", DEFAULT_API_URL), f"{where}.api_url")
        roles = entry.get("invite_roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise IntegrationsError(f"{where}.invite_roles: must be a list of role names")
        for position, role in enumerate(roles):
            if role not in ROLES:
                raise IntegrationsError(
                    f"{where}.invite_roles[{position}]: unknown role {role!r} "
                    f"(known: {', '.join(ROLES)})"
                )
        out.append(
            SlackConnector(
                name=name,
                bot_token=token,
                signing_secret=secret,
                api_url=api_url if api_url.endswith("/") else api_url + "/",
                invite_roles=tuple(roles),
                app_url=_url(
                    entry.get("app_url", "http://127.0.0.1:8080"), f"{where}.app_url"
                ).rstrip("/"),
                workspace_url=_url(
                    entry.get("workspace_url", "https://slack.com"), f"{where}.workspace_url"
                ).rstrip("/"),
            )
        )
    return tuple(out)
