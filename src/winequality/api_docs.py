"""Self-hosted API docs: ``/docs`` (Swagger UI) that renders without internet.

FastAPI's built-in pages load their JavaScript, CSS and favicon from CDNs, so they are blank on
a machine without internet. This is FastAPI's documented recipe for self-hosted docs assets (the
app is created with ``docs_url=None``; the page comes from ``get_swagger_ui_html``), with the
asset files that the ``fastapi-offline`` package ships, served by Starlette's
``StaticFiles(packages=...)``. FastAPI's second page, ReDoc at ``/redoc``, is turned off
(``redoc_url=None``) rather than self-hosted: whatever its options, it fetches the Redocly logo
from a CDN, and ``/docs`` documents the same API.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
# The package and folder holding swagger-ui-bundle.js, swagger-ui.css and favicon.png.
ASSETS_PACKAGE = ("fastapi_offline", "static")


def add_docs(app: FastAPI) -> None:
    """Add ``/docs`` and its OAuth2 redirect page to ``app``, with local assets.

    ``app`` must have been created with ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages).
    """
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError("create the app with docs_url=None and redoc_url=None")
    openapi_url = app.openapi_url
    if openapi_url is None:
        raise ValueError("the docs pages need the app's OpenAPI schema (openapi_url)")
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url
    app.mount(ASSETS_URL, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=f"{root}{oauth2_redirect_url}" if oauth2_redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def swagger_ui_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    # Plain Starlette routes (GET and HEAD), as FastAPI registers its own docs pages.
    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    if oauth2_redirect_url:
        app.add_route(oauth2_redirect_url, swagger_ui_redirect, include_in_schema=False)
