"""The API's description and its browser page, the only API paths open without a token.

They describe the endpoints and hold no data; every endpoint they describe still needs
``Authorization: Bearer``, which the page's *Authorize* button sends. The page's
scripts are served from the installed ``swagger-ui-bundle`` package, so it works on a
network without access to a CDN.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse
from swagger_ui_bundle import swagger_ui_path

OPENAPI_PATH = "/api/v1/openapi.json"
DOCS_PATH = "/docs"
_ASSETS = f"{DOCS_PATH}/assets"
BEARER_SCHEME = "bearer"

router = APIRouter(tags=["session"])

# An operation's OpenAPI extra for the few endpoints that take no bearer token
# (operations endpoints, this description, webhooks that check their sender's own
# credential): it overrides the document-wide bearer requirement.
NO_BEARER_TOKEN: dict[str, Any] = {"security": []}


def describe(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, stating that operations take a bearer token unless they
    are marked :data:`NO_BEARER_TOKEN`."""
    if app.openapi_schema is None:
        document = app.openapi()
        schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[BEARER_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (incidents admin token create) or an OIDC JWT",
        }
        document["security"] = [{BEARER_SCHEME: []}]
        app.openapi_schema = document
    return app.openapi_schema


@router.get(
    OPENAPI_PATH,
    summary="The OpenAPI description of this API (no token needed)",
    openapi_extra=NO_BEARER_TOKEN,
)
async def openapi(request: Request) -> dict[str, Any]:
    """The API's OpenAPI 3 document (for clients, code generators and fuzzers)."""
    return describe(request.app)


@router.get(DOCS_PATH, include_in_schema=False)
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=OPENAPI_PATH,
        title="Incidents API",
        swagger_js_url=f"{_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{_ASSETS}/favicon-32x32.png",
    )


def mount_docs(app: FastAPI) -> None:
    """Serve the description, the page and the page's scripts."""
    app.include_router(router)
    app.mount(_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")
