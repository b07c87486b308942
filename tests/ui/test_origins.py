"""Host and Origin guards, proxy origins, security headers and the 503 page, over HTTP in this
process (no browser, no model: a fresh project)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from kennel.errors import ConfigError, MetadataError
from kennel.serve.server import start_app_in_thread
from kennel.ui.app import create_app
from kennel.ui.origins import allowed_hosts, public_origins
from kennel.wiring import Workspace
from tests.conftest import make_project

PUBLIC = "https://kennel.example.com"


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace(make_project(tmp_path / "p"))
    yield workspace
    workspace.close()


@contextmanager
def serving(app: Any) -> Iterator[str]:
    server = start_app_in_thread(app, port=0)
    try:
        yield server.url
    finally:
        server.stop()


def client_of(url: str, host: str = "") -> httpx.Client:
    """A browser-like client whose requests say ``host`` (what a proxy would pass on)."""
    return httpx.Client(base_url=url, headers={"Host": host} if host else {})


def sign_in(client: httpx.Client, token: str, **headers: str) -> httpx.Client:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert found is not None
    answer = client.post(
        "/login", data={"token": token, "csrf": found[1]}, headers=headers, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return client


def test_every_loopback_bind_answers_only_to_loopback_names_and_the_proxys() -> None:
    for bind in ("127.0.0.1", "localhost", "::1"):
        assert allowed_hosts(bind) == ["127.0.0.1", "localhost", "[::1]"]
    assert allowed_hosts("::1", public_origins([PUBLIC]))[-1] == "kennel.example.com"
    assert allowed_hosts("0.0.0.0") is None
    # the rest of 127.0.0.0/8 is loopback too: the check stays on, naming the bound address
    # (it was off for 127.0.0.2, letting a rebound DNS name reach the dashboard)
    assert allowed_hosts("127.0.0.2") == ["127.0.0.1", "localhost", "[::1]", "127.0.0.2"]
    assert allowed_hosts("0:0:0:0:0:0:0:1") == ["127.0.0.1", "localhost", "[::1]",
                                                "[0:0:0:0:0:0:0:1]"]  # fmt: skip
    assert allowed_hosts("192.168.1.5") is None and allowed_hosts("example.org") is None
    assert public_origins([f"{PUBLIC}/, https://b.example:8443", "HTTPS://B.example:8443"]) == (
        PUBLIC,
        "https://b.example:8443",
    )
    for bad in ("kennel.example.com", "https://kennel.example.com/ui", "ftp://x", "https://u@x"):
        with pytest.raises(ConfigError, match="--public-origin"):
            public_origins([bad])


def test_ipv6_loopback_refuses_a_rebound_name(ws: Workspace) -> None:
    with serving(create_app(ws, allowed_hosts=allowed_hosts("::1"))) as url:
        with client_of(url, "[::1]:8090") as client:
            assert client.get("/health/live").status_code == 200
        with client_of(url, "evil.example") as client:
            refused = client.get("/health/live")
            assert refused.status_code == 400  # said as JSON, naming the names it answers to
            assert refused.json()["error"] == "unknown host"
            assert "127.0.0.1, localhost, [::1], not to" in refused.json()["detail"]
            page = client.get("/")
            assert page.status_code == 400 and "text/html" in page.headers["content-type"]
            assert "not to &#x27;evil.example&#x27;" in page.text and "--public-origin" in page.text
        with client_of(url, "[::1]evil") as client:
            assert client.get("/health/live").status_code == 400


def test_behind_a_tls_proxy_the_public_origin_signs_in_and_acts(ws: Workspace) -> None:
    token, _ = ws.tokens.create("operator", "olga")
    origins = public_origins([PUBLIC])
    app = create_app(ws, allowed_hosts=allowed_hosts("127.0.0.1", origins), public_origins=origins)
    with serving(app) as url:
        # the proxy passes the public Host on ...
        with client_of(url, "kennel.example.com") as client:
            sign_in(client, token, Origin=PUBLIC)
            assert client.get("/").status_code == 200
        # ... or rewrites it to the loopback address: the Origin is still the public one
        with client_of(url) as client:
            sign_in(client, token, Origin=PUBLIC)
            assert client.get("/").status_code == 200
            elsewhere = {"Origin": "https://evil.example"}
            assert client.post("/logout", headers=elsewhere).status_code == 403
        with client_of(url, "evil.example") as client:
            assert client.get("/login").status_code == 400


def test_tls_adds_hsts_and_a_refused_action_leads_back(ws: Workspace) -> None:
    token, _ = ws.tokens.create("viewer", "vera")
    with serving(create_app(ws, tls=True)) as url, client_of(url) as client:
        assert client.get("/login").headers["strict-transport-security"] == "max-age=31536000"
        sign_in(client, token)
        found = re.search(r'name="csrf" value="([^"]+)"', client.get("/alerts").text)
        assert found is not None
        refused = client.post(
            "/actions/rollback",
            data={"env": "production", "csrf": found[1], "back": "/deployments?x=1"},
        )
        assert refused.status_code == 403
        assert '<a href="/deployments?x=1">Back</a>' in refused.text
        elsewhere = client.post(
            "/actions/rollback",
            data={"env": "production", "csrf": found[1], "back": "//evil.example/"},
        )
        assert "evil.example" not in elsewhere.text and '<a href="/">Back</a>' in elsewhere.text
    with serving(create_app(ws)) as url, client_of(url) as client:
        assert "strict-transport-security" not in client.get("/login").headers


def test_a_503_says_when_to_retry_and_names_no_host_to_strangers(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, _ = ws.tokens.create("viewer", "vera")
    with serving(create_app(ws)) as url, client_of(url) as known, client_of(url) as stranger:
        sign_in(known, token)
        found = re.search(r'name="csrf" value="([^"]+)"', stranger.get("/login").text)
        assert found is not None

        def down(*_args: object, **_kw: object) -> None:
            raise MetadataError("database db.internal:5432 is unreachable")

        monkeypatch.setattr(ws.tokens, "identify", down)
        refused = stranger.post("/login", data={"token": token, "csrf": found[1]})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "10"
        assert "db.internal" not in refused.text and "cannot reach its database" in refused.text
        page = known.get("/")
        assert page.status_code == 503 and "retry-after" in page.headers
        assert "db.internal:5432" in page.text  # a signed-in user is told what failed


def test_only_a_local_proxy_sets_the_scheme_and_never_the_client_address() -> None:
    import contextlib

    from kennel.ui.origins import ProxiedScheme

    seen: list[dict[str, object]] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(scope)

    def through(peer: str, *headers: tuple[bytes, bytes]) -> dict[str, object]:
        scope = {"type": "http", "scheme": "http", "client": (peer, 5555), "headers": [*headers]}
        # driven by hand: it awaits nothing but ``app`` (the suite may run inside an event loop)
        with contextlib.suppress(StopIteration):
            ProxiedScheme(app)(scope, None, None).send(None)
        return seen[-1]

    proto = (b"x-forwarded-proto", b"https")
    spoof = (b"x-forwarded-for", b"10.9.8.7")
    assert through("127.0.0.1", proto, spoof) == {
        "type": "http", "scheme": "https", "client": ("127.0.0.1", 5555), "headers": [proto, spoof]
    }  # fmt: skip
    assert through("::1", (b"x-forwarded-proto", b"http, https"))["scheme"] == "https"
    assert through("192.0.2.4", proto)["scheme"] == "http"  # not a proxy of this machine
    assert through("127.0.0.1", (b"x-forwarded-proto", b"gopher"))["scheme"] == "http"
