"""The prediction service's API docs (/docs, /redoc) in a real browser ask nothing of any
other host: ReDoc's bundle once fetched its logo from a CDN."""

from __future__ import annotations

from typing import Any

from tests.ui.conftest import Dashboard


def test_api_docs_pages_request_nothing_but_the_service(browser: Any, dashboard: Dashboard) -> None:
    service = dashboard.production.url
    for path, rendered in (
        ("/docs", ".opblock"),
        ("/redoc", "[role=navigation] img, .menu-content img"),
    ):
        page = browser.new_page()
        asked: list[str] = []
        page.on("request", lambda request, asked=asked: asked.append(request.url))
        try:
            page.goto(f"{service}{path}", wait_until="networkidle")
            page.wait_for_selector(rendered, timeout=20_000)
            page.wait_for_load_state("networkidle")
        finally:
            page.close()
        outside = [u for u in asked if not u.startswith((service, "data:", "blob:"))]
        assert asked and not outside, (path, outside)
        if path == "/redoc":  # its logo, from the service now
            assert f"{service}/docs-assets/favicon.png" in asked, asked


def test_redocs_bundle_is_the_patched_one_however_its_path_is_spelt(dashboard: Dashboard) -> None:
    import httpx

    service = dashboard.production.url
    for spelt in ("redoc.standalone.js", "./redoc.standalone.js", "redoc.standalone.js/"):
        answer = httpx.get(f"{service}/docs-assets/{spelt}")
        assert answer.status_code == 200, spelt
        assert b"cdn.redoc.ly" not in answer.content and len(answer.content) > 100_000, spelt
    assert httpx.post(f"{service}/docs-assets/redoc.standalone.js").status_code == 405
