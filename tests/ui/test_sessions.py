"""Signing in, sessions, CSRF, origins and bad input, over HTTP against the dashboard served on
loopback (no browser, no model needed: a fresh project)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from kennel.db.audit import entries
from kennel.serve.server import RunningServer, start_app_in_thread
from kennel.ui.app import create_app, local_path
from kennel.ui.sessions import LoginThrottle, SessionStore
from kennel.wiring import Workspace
from tests.conftest import make_project


@dataclass
class Served:
    url: str
    ws: Workspace
    tokens: dict[str, str]
    server: RunningServer
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, **headers: str) -> httpx.Client:
        """A browser-like client (its own cookies), closed with the fixture."""
        self.clients.append(httpx.Client(base_url=self.url, headers=headers))
        return self.clients[-1]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    ws = Workspace(make_project(tmp_path / "p"))
    tokens = {role: ws.tokens.create(role, f"{role}-1")[0] for role in ("viewer", "operator")}
    server = start_app_in_thread(create_app(ws, allowed_hosts=["127.0.0.1"]), port=0)
    served = Served(server.url, ws, tokens, server)
    try:
        yield served
    finally:
        for client in served.clients:
            client.close()
        server.stop()
        ws.close()


def sign_in(served: Served, role: str, **headers: str) -> httpx.Client:
    client = served.client(**headers)
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = client.post("/login", data={"token": served.tokens[role], "csrf": csrf[1]})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    return client


def csrf_of(client: httpx.Client, path: str = "/alerts") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found is not None
    return found[1]


def test_the_cookie_holds_a_session_id_never_the_token(served: Served) -> None:
    client = served.client()
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = client.post("/login", data={"token": served.tokens["operator"], "csrf": csrf[1]})
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "kennel_session=" in c)
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite"} <= attributes and "secure" not in attributes
    assert "samesite=strict" in cookie.lower()
    session_id = cookie.split(";")[0].split("=", 1)[1]
    secret = served.tokens["operator"]
    assert len(session_id) >= 40 and secret not in session_id and secret[3:11] not in session_id
    page = client.get("/")
    assert page.status_code == 200 and "operator-1 (operator)" in page.text
    assert secret not in page.text
    with served.ws.db.session() as s:
        login = next(e for e in entries(s, 10) if e.action == "auth.login")
    assert login.actor == "operator-1" and login.details == {"via": "dashboard", "role": "operator"}


def test_behind_a_tls_proxy_the_cookie_is_secure_and_host_bound(served: Served) -> None:
    client = served.client(**{"X-Forwarded-Proto": "https"})
    form = client.get("/login")
    nonce = form.headers["set-cookie"]
    assert nonce.startswith("kennel_login=") and "secure" in nonce.lower()
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    client.cookies.clear()  # httpx, on plain http, keeps Secure cookies: send it by hand
    answer = client.post(
        "/login",
        data={"token": served.tokens["viewer"], "csrf": csrf[1]},
        headers={
            "Origin": "https://127.0.0.1:" + served.url.rsplit(":", 1)[1],
            "Cookie": nonce.split(";")[0],
        },
    )
    assert answer.status_code == 303, answer.text[-300:]
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "kennel_session" in c)
    assert cookie.startswith("__Host-kennel_session=") and "secure" in cookie.lower()


def test_a_wrong_token_is_refused_and_audited(served: Served) -> None:
    client = served.client()
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert csrf is not None
    forged = "kn_0123abcd_" + "x" * 32
    answer = client.post("/login", data={"token": forged, "csrf": csrf[1]})
    assert answer.status_code == 401 and "unknown or revoked" in answer.text
    assert not any("kennel_session=" in c for c in answer.headers.get_list("set-cookie"))
    with served.ws.db.session() as s:
        failed = next(e for e in entries(s, 10) if e.action == "auth.login_failed")
    assert failed.details == {"token": "0123abcd"} and forged not in str(failed.details)
    assert client.get("/").status_code == 303  # still signed out


def test_a_flood_of_wrong_tokens_is_cut_off_before_it_buries_the_audit_chain(
    served: Served,
) -> None:
    client = served.client()
    statuses = []
    for i in range(14):
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
        assert csrf is not None
        forged = f"kn_{i:08x}_" + "y" * 32
        # a new claimed address each try: uvicorn trusted X-Forwarded-For from loopback, so
        # the throttle keyed on it never cut anything off
        spoofed = {"X-Forwarded-For": f"10.0.0.{i}", "Forwarded": f"for=10.0.1.{i}"}
        answer = client.post("/login", data={"token": forged, "csrf": csrf[1]}, headers=spoofed)
        statuses.append(answer.status_code)
    assert statuses == [401] * 10 + [429] * 4
    with served.ws.db.session() as s:
        failed = [e for e in entries(s, 100) if e.action == "auth.login_failed"]
    assert len(failed) == 10  # refused while throttled: not audited
    # every local user shares 127.0.0.1: a valid token still signs in from a throttled address
    sign_in(served, "operator")
    throttle = LoginThrottle(limit=1, window_s=0.05, capacity=2)
    throttle.failed("a")
    assert not throttle.allowed("a") and throttle.allowed("b")
    time.sleep(0.1)
    assert throttle.allowed("a")


def test_signing_in_needs_the_forms_csrf_token_and_goes_nowhere_else(served: Served) -> None:
    client = served.client()
    answer = client.post("/login", data={"token": served.tokens["viewer"], "csrf": "x"})
    assert answer.status_code == 403 and "expired" in answer.text
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:1"):
        form = client.get("/login", params={"next": target})
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        answer = client.post(
            "/login", data={"token": served.tokens["viewer"], "csrf": csrf[1], "next": target}
        )
        assert answer.headers["location"] == "/", target
    assert local_path("/alerts?state=open") == "/alerts?state=open"


def test_bad_input_is_a_clear_4xx_page_never_a_500(served: Served) -> None:
    client = sign_in(served, "operator")
    pages = {
        "/alerts/abc": 400,
        "/alerts/0": 400,
        "/alerts/99999": 404,
        "/alerts?state=closed": 400,
        "/alerts?limit=0": 400,
        "/alerts?limit=100000": 400,
        "/audit?limit=abc": 400,
        "/audit?actor=" + "a" * 129: 400,
        "/deployments/nowhere": 404,
        "/deployments/" + "e" * 65: 400,
        "/api/live/alerts/abc": 400,
        "/no-such-page": 404,
        "/static/../kennel.yaml": 404,
    }
    for path, status in pages.items():
        answer = client.get(path)
        assert answer.status_code == status, (path, answer.text[-500:])
        assert "Traceback" not in answer.text
        if not path.startswith("/api"):  # /static/ too: the dashboard's page, not plain text
            assert f"<h1>{status}:" in answer.text, path
    assert "did you mean &#39;production&#39;?" in client.get("/deployments/prodution").text
    csrf = csrf_of(client)
    posts = [
        ("/actions/approve", {"model": "no such name!"}, 403),  # the operator's role first
        ("/actions/release", {"model": "pets@1", "env": "nowhere", "current": "0"}, 404),
        ("/actions/release", {"model": "bad name!", "env": "production", "current": "0"}, 400),
        ("/actions/release", {"model": "pets@7", "env": "production", "current": "0"}, 404),
        # without the version the page saw served, a stale click could not be told
        ("/actions/release", {"model": "pets@1", "env": "production"}, 400),
        ("/actions/release", {"model": "pets@1", "env": "production", "current": "-1"}, 400),
        ("/actions/rollback", {"env": "production"}, 404),  # nothing served yet
        ("/actions/ack", {"alert": "abc"}, 400),
        ("/actions/ack", {"alert": "424242"}, 404),
        ("/actions/resolve", {"alert": "1", "note": "n" * 501}, 400),
        ("/actions/retrain", {"alert": "424242"}, 404),
    ]
    for path, form, status in posts:
        answer = client.post(path, data={**form, "csrf": csrf, "back": "/alerts"})
        assert answer.status_code == status, (path, form, answer.text[-500:])
        assert "Traceback" not in answer.text and "Nothing was changed." in answer.text


def test_actions_need_the_sessions_csrf_token_and_this_origin(served: Served) -> None:
    client = sign_in(served, "operator")
    csrf = csrf_of(client)
    form = {"env": "production", "back": "/deployments"}
    assert client.post("/actions/rollback", data=form).status_code == 403
    assert client.post("/actions/rollback", data={**form, "csrf": "0" * 43}).status_code == 403
    elsewhere = client.post(
        "/actions/rollback", data={**form, "csrf": csrf}, headers={"Origin": "http://evil.example"}
    )
    assert elsewhere.status_code == 403 and "another site" in elsewhere.text
    fetched = client.post(
        "/actions/rollback", data={**form, "csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert fetched.status_code == 403
    # the same post, from here, reaches the library (which says nothing is served yet)
    here = client.post("/actions/rollback", data={**form, "csrf": csrf},
                       headers={"Origin": served.url, "Sec-Fetch-Site": "same-origin"})  # fmt: skip
    assert here.status_code == 404 and "no current version" in here.text


def test_live_regions_come_as_json_and_need_a_session(served: Served) -> None:
    anonymous = served.client()
    answer = anonymous.get("/api/live/alerts")
    assert answer.status_code == 401 and answer.json()["error"] == "signed out"
    client = sign_in(served, "viewer")
    page = client.get("/alerts?state=open")
    assert 'data-live-url="/api/live/alerts?state=open"' in page.text
    live = client.get("/api/live/alerts?state=open").json()
    assert set(live["regions"]) == set(live["hashes"]) == {"live-alerts"}
    assert "no alerts open" in live["regions"]["live-alerts"]
    overview = client.get("/api/live/").json()
    assert "stage-production" in overview["regions"]["live-strip"]


def test_every_answer_carries_a_strict_content_security_policy(served: Served) -> None:
    client = sign_in(served, "viewer")
    for path in ("/", "/login", "/alerts/99", "/static/live.js"):
        policy = client.get(path).headers["content-security-policy"]
        assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    script = client.get("/static/live.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400  # rebinding


def test_signing_out_ends_the_session(served: Served) -> None:
    client = sign_in(served, "viewer")
    csrf = csrf_of(client, "/")
    assert client.post("/logout", data={"csrf": "wrong"}).status_code == 403
    answer = client.post("/logout", data={"csrf": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert client.get("/").status_code == 303


def test_sessions_expire_and_are_bounded() -> None:
    store = SessionStore(idle_s=0.05, capacity=2)
    first = store.create("kn_a")
    assert store.get(first.id) is first
    time.sleep(0.1)
    assert store.get(first.id) is None
    a, b, c = store.create("kn_a"), store.create("kn_b"), store.create("kn_c")
    assert store.get(a.id) is None and store.get(b.id) is b and store.get(c.id) is c
    store.drop_token("kn_b")
    assert store.get(b.id) is None


def test_signing_in_again_and_again_never_signs_anybody_else_out() -> None:
    store = SessionStore(per_token=20)
    admin = store.create("kn_admin")
    viewer = [store.create("kn_viewer") for _ in range(1001)]
    assert store.get(admin.id) is admin
    assert [s for s in viewer if store.get(s.id) is not None] == viewer[-20:]
    # when the whole store is full, the token holding the most loses its oldest
    full = SessionStore(capacity=3, per_token=20)
    a, b1, b2 = full.create("kn_a"), full.create("kn_b"), full.create("kn_b")
    full.create("kn_c")
    assert full.get(a.id) is a and full.get(b1.id) is None and full.get(b2.id) is b2


def test_successful_sign_ins_per_token_are_bounded(served: Served) -> None:
    admin = sign_in(served, "operator")
    for _ in range(30):  # a minute's worth
        sign_in(served, "viewer")
    client = served.client()
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert csrf is not None
    answer = client.post("/login", data={"token": served.tokens["viewer"], "csrf": csrf[1]})
    assert answer.status_code == 429 and "too many sign-ins with this token" in answer.text
    assert admin.get("/").status_code == 200  # still signed in
