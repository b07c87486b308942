"""Swagger UI at /docs and ReDoc at /redoc with their scripts served from the installed
``fastapi-offline`` package (MIT; Swagger UI Apache-2.0, ReDoc MIT): they work offline.
ReDoc's bundle names one picture on a CDN (its "API docs by Redocly" logo): it is served with
that address pointing at the local favicon instead, so the page asks nothing of the network."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

DOCS_ASSETS = "/docs-assets"
REDOC_JS = "redoc.standalone.js"
_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


def _assets() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


@cache
def _redoc_bundle() -> bytes:
    bundle = (_assets() / REDOC_JS).read_bytes()
    return bundle.replace(_CDN_LOGO, f"{DOCS_ASSETS}/favicon.png".encode())


class _DocsAssets(StaticFiles):
    """The package's assets, ReDoc's bundle as patched (whichever way its path is spelt:
    Starlette normalises ``./x`` and ``x/`` to ``x`` before this)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path == REDOC_JS and scope["method"] in ("GET", "HEAD"):  # else StaticFiles' 405
            return Response(
                _redoc_bundle(),
                media_type="text/javascript",
                headers={"Cache-Control": "public, max-age=86400"},
            )
        return await super().get_response(path, scope)


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
        # Swagger UI sends the spec's URL to validator.swagger.io for a badge unless the
        # page's host is localhost or 127.0.0.1 ([::1], a LAN name): the page stays offline
        swagger_ui_parameters={"validatorUrl": None},
    )


async def redoc(request: Request) -> HTMLResponse:
    openapi_url, title = _openapi_and_title(request)
    return get_redoc_html(
        openapi_url=openapi_url,
        title=title,
        redoc_js_url=f"{DOCS_ASSETS}/{REDOC_JS}",
        redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        with_google_fonts=False,
    )


def install(app: FastAPI) -> None:
    """The docs pages and the assets they load (the default pages load them from a CDN)."""
    app.mount(DOCS_ASSETS, _DocsAssets(directory=_assets()), name="docs-assets")
    app.add_api_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
