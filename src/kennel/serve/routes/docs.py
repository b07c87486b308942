"""Swagger UI at /docs and ReDoc at /redoc with their scripts served from the installed
``fastapi-offline`` package (MIT; Swagger UI Apache-2.0, ReDoc MIT): they work offline."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_ASSETS = "/docs-assets"


def _openapi_and_title(request: Request) -> tuple[str, str]:
    app: FastAPI = request.app
    return app.openapi_url or "/openapi.json", f"{app.title}: API"


async def swagger(request: Request) -> HTMLResponse:
    openapi_url, title = _openapi_and_title(request)
    return get_swagger_ui_html(
        openapi_url=openapi_url,
        title=title,
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
    )


async def redoc(request: Request) -> HTMLResponse:
    openapi_url, title = _openapi_and_title(request)
    return get_redoc_html(
        openapi_url=openapi_url,
        title=title,
        redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
        redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        with_google_fonts=False,
    )


def install(app: FastAPI) -> None:
    """The docs pages and the assets they load (the default pages load them from a CDN)."""
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")
    app.add_api_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
