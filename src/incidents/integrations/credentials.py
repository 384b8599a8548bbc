"""The configured inbound integrations (alert sources) and their credentials.

```yaml
integrations:
  alertmanager:
    - name: prod
      token: 8f1c...            # or tokens: [old, new] while rotating
  pagerduty:
    - name: main
      secrets: [s1, s2]         # signing secrets; any one verifies a delivery
```

Each integration records as ``integration:<provider>:<name>`` and its events carry
the CloudEvent source ``<provider>://<name>``. Credentials are compared in constant
time and never appear in messages or logs.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# Shorter credentials could be guessed; webhook secrets from PagerDuty are far longer.
MIN_SECRET_CHARS = 16


class IntegrationsError(ValueError):
    """The integrations section cannot be used; the message names the bad key."""


@dataclass(frozen=True, slots=True)
class Integration:
    """One configured alert source."""

    provider: str
    name: str
    # Bearer tokens (Alertmanager) or signing secrets (PagerDuty); several while rotating.
    credentials: tuple[str, ...]

    @property
    def recorder(self) -> str:
        """Who its deliveries are recorded by."""
        return f"integration:{self.provider}:{self.name}"

    @property
    def source(self) -> str:
        """The CloudEvent source of its events."""
        return f"{self.provider}://{self.name}"

    def __repr__(self) -> str:
        # Never print the credentials, even in a traceback.
        return f"Integration({self.provider}://{self.name})"


@dataclass(frozen=True, slots=True)
class Integrations:
    """Every configured integration, by provider."""

    items: tuple[Integration, ...] = ()

    def of(self, provider: str) -> tuple[Integration, ...]:
        return tuple(i for i in self.items if i.provider == provider)

    def by_token(self, provider: str, token: str) -> Integration | None:
        """The integration whose bearer token this is, compared in constant time.

        Every configured token is compared, so the time taken does not tell which
        integration (or how many) came close.
        """
        found: Integration | None = None
        given = token.encode()
        for integration in self.of(provider):
            for credential in integration.credentials:
                if hmac.compare_digest(given, credential.encode()) and found is None:
                    found = integration
        return found


def _credentials(entry: dict[str, Any], where: str, single: str, plural: str) -> tuple[str, ...]:
    if single in entry and plural in entry:
        raise IntegrationsError(f"{where}: give {single} or {plural}, not both")
    raw = entry.get(plural) if plural in entry else entry.get(single)
    key = plural if plural in entry else single
    values = raw if isinstance(raw, list) else [raw]
    if raw is None or not values:
        raise IntegrationsError(f"{where}.{single}: missing (each integration needs one)")
    out: list[str] = []
    for index, value in enumerate(values):
        at = f"{where}.{key}[{index}]" if key == plural else f"{where}.{key}"
        if not isinstance(value, str) or not value.strip():
            raise IntegrationsError(f"{at}: must be a non-empty string")
        if len(value.strip()) < MIN_SECRET_CHARS:
            raise IntegrationsError(f"{at}: must be at least {MIN_SECRET_CHARS} characters")
        out.append(value.strip())
    return tuple(out)


@dataclass(frozen=True, slots=True)
class CredentialKeys:
    """How a provider's entries name their credentials: one (``token``) or several
    while rotating (``tokens``)."""

    single: str
    plural: str


def entry_name(entry: dict[str, Any], where: str, seen: set[str]) -> str:
    """The ``name`` of one entry of a section's list: lowercase, and not used twice
    (``seen`` holds the names of the entries before it, and gets this one)."""
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise IntegrationsError(
            f"{where}.name: must be lowercase letters, digits, '-' or '_' (got {name!r})"
        )
    if name in seen:
        raise IntegrationsError(f"{where}.name: {name!r} is used twice")
    seen.add(name)
    return name


def parse_integrations(doc: object, providers: Mapping[str, CredentialKeys]) -> Integrations:
    """Validate the ``integrations`` section (None means no integrations) for the
    ``providers`` this build knows."""
    if doc is None:
        return Integrations()
    if not isinstance(doc, dict):
        raise IntegrationsError("integrations: must be a mapping of provider to a list")
    items: list[Integration] = []
    for provider, entries in doc.items():
        if provider not in providers:
            raise IntegrationsError(
                f"integrations: unknown provider {provider!r} (known: {', '.join(providers)})"
            )
        if not isinstance(entries, list):
            raise IntegrationsError(f"integrations.{provider}: must be a list of integrations")
        single, plural = providers[provider].single, providers[provider].plural
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            where = f"integrations.{provider}[{index}]"
            if not isinstance(entry, dict):
                raise IntegrationsError(f"{where}: must be a mapping with name and {single}")
            unknown = set(entry) - {"name", single, plural}
            if unknown:
                raise IntegrationsError(
                    f"{where}: unknown key {sorted(unknown)[0]!r} (known: name, {single}, {plural})"
                )
            name = entry_name(entry, where, seen)
            items.append(Integration(provider, name, _credentials(entry, where, single, plural)))
    return Integrations(tuple(items))
