"""PagerDuty: alerts in by webhook."""

from __future__ import annotations

from typing import TYPE_CHECKING

from incidents.integrations.credentials import CredentialKeys
from incidents.integrations.pagerduty.inbound import PAGERDUTY
from incidents.integrations.provider import Provider

if TYPE_CHECKING:
    from fastapi import APIRouter


def _routes() -> APIRouter:
    from incidents.integrations.pagerduty.routes import router

    return router


PROVIDER = Provider(PAGERDUTY, CredentialKeys("secret", "secrets"), _routes)
