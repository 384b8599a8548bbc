"""The connectors.slack section: validated with the key at fault named, secrets masked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from incidents.app import load_configuration, parse_sections
from incidents.config import ConfigError, Settings
from incidents.integrations.slack.config import SlackConnector

GOOD = {
    "name": "acme",
    "bot_token": "xoxb-1234567890-abcdef",
    "signing_secret": "8f14e45fceea167a5a36dedd4bea2543",
}


def sections(entries: Any) -> Any:
    return parse_sections(Settings(connectors={"slack": entries}))


def test_a_good_section() -> None:
    parsed = sections([GOOD | {"invite_roles": ["incident.commander"], "api_url": "http://x/api"}])
    (connector,) = parsed.connectors.chat
    assert isinstance(connector, SlackConnector)
    assert connector.destination == "slack:acme"
    assert connector.api_url == "http://x/api/"
    assert connector.invite_roles == ("incident.commander",)
    assert "xoxb" not in repr(connector) and "8f14" not in repr(connector)


@pytest.mark.parametrize(
    ("entries", "named"),
    [
        ("acme", "connectors.slack: must be a list"),
        (["acme"], "connectors.slack[0]: must be a mapping"),
        ([GOOD | {"colour": "red"}], "connectors.slack[0]: unknown key 'colour'"),
        ([GOOD | {"name": "Acme!"}], "connectors.slack[0].name"),
        ([GOOD, GOOD], "connectors.slack[1].name: 'acme' is used twice"),
        ([{k: v for k, v in GOOD.items() if k != "bot_token"}], "connectors.slack[0].bot_token"),
        ([GOOD | {"bot_token": "abcdefghijklmnop"}], "connectors.slack[0].bot_token"),
        ([GOOD | {"signing_secret": "short"}], "connectors.slack[0].signing_secret"),
        ([GOOD | {"api_url": "ftp://x"}], "connectors.slack[0].api_url"),
        ([GOOD | {"invite_roles": ["boss"]}], "connectors.slack[0].invite_roles[0]"),
        ([GOOD | {"invite_roles": "admin"}], "connectors.slack[0].invite_roles"),
    ],
)
def test_bad_sections_name_the_key(entries: Any, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        sections(entries)


def test_an_unknown_connector_provider_is_named() -> None:
    # One section for every kind of connector: the message lists them all.
    with pytest.raises(
        ConfigError, match=r"connectors\.teams: unknown vendor; known: jira, servicenow, slack"
    ):
        parse_sections(Settings(connectors={"teams": []}))


def test_the_yaml_file_and_masked_show(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "connectors:\n  slack:\n    - name: acme\n"
        f"      bot_token: {GOOD['bot_token']}\n      signing_secret: {GOOD['signing_secret']}\n"
    )
    settings = load_configuration({"IM_CONFIG": str(path)})
    shown = settings.masked()["connectors"]["slack"][0]
    assert shown == {"name": "acme", "bot_token": "***", "signing_secret": "***"}


def test_connectors_cannot_come_from_a_variable() -> None:
    settings = load_configuration({"IM_CONNECTORS": "slack"})
    assert settings.connectors is None


def test_chat_and_itsm_connectors_share_one_section() -> None:
    servicenow = {
        "name": "prod",
        "instance_url": "https://acme.service-now.com",
        "username": "svc",
        "password": "pw",
    }
    parsed = parse_sections(Settings(connectors={"slack": [GOOD], "servicenow": [servicenow]}))
    assert parsed.connectors.itsm.ids == ["servicenow:prod"]
    assert [c.destination for c in parsed.connectors.chat] == ["slack:acme"]
    # A mistake in either kind names its own key.
    with pytest.raises(ConfigError, match=r"connectors\.servicenow\[0\]\.instance_url"):
        parse_sections(
            Settings(connectors={"slack": [GOOD], "servicenow": [servicenow | {"instance_url": 1}]})
        )
