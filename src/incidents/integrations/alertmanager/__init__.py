"""Prometheus Alertmanager: alerts in by webhook."""

from __future__ import annotations

from typing import TYPE_CHECKING

from incidents.integrations.alertmanager.inbound import ALERTMANAGER
from incidents.integrations.credentials import CredentialKeys
from incidents.integrations.provider import Provider

if TYPE_CHECKING:
    from fastapi import APIRouter


def _routes() -> APIRouter:
    from incidents.integrations.alertmanager.routes import router

    return router


PROVIDER = Provider(ALERTMANAGER, CredentialKeys("token", "tokens"), _routes)
