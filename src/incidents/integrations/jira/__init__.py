"""Jira Cloud: incidents kept in step with issues (REST v3, signed webhooks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from incidents.integrations.jira.config import parse_entry
from incidents.integrations.provider import Provider

if TYPE_CHECKING:
    from fastapi import APIRouter


def _routes() -> APIRouter:
    from incidents.integrations.jira.routes import router

    return router


PROVIDER = Provider(name="jira", credentials=None, routes=_routes, parse_connector=parse_entry)
