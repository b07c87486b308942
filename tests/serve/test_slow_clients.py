"""Slow or idle clients cannot hold the service's connections (issue #12): a request body must
arrive within ``serve.body_timeout_s`` (a stalled or trickled one is a 408 and the connection
closes) while other requests are answered meanwhile; idle kept-alive connections close after
``serve.keep_alive_s``; at most ``serve.max_connections`` are served at once."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from kennel.config import Project
from kennel.serve.server import RunningServer
from tests.helpers import jpeg
from tests.serving import served_project, serving_production

BODY_TIMEOUT_S = 2.0
HEADERS = (
    b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
    b"Content-Length: 5000\r\n\r\n"
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    serve = {"body_timeout_s": BODY_TIMEOUT_S, "keep_alive_s": 1.0, "max_connections": 6}
    return served_project(tmp_path_factory.mktemp("slow"), models=1, poll_s=3600, serve=serve)


@pytest.fixture
def server(project: Project) -> Iterator[RunningServer]:
    with serving_production(project) as (running, _ws):
        yield running


def _connect(running: RunningServer) -> socket.socket:
    where = urlsplit(running.url)
    return socket.create_connection((where.hostname, where.port), timeout=15)


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _predict(client: httpx.Client) -> int:
    answer = client.post(
        "/v1/predict", content=jpeg(seed=3), headers={"content-type": "image/jpeg"}
    )
    return answer.status_code


def test_a_stalled_body_is_cut_off_while_others_are_answered(server: RunningServer) -> None:
    with _connect(server) as slow, httpx.Client(base_url=server.url, timeout=30) as client:
        slow.sendall(HEADERS + jpeg(seed=1)[:100])  # then nothing more
        began = time.monotonic()
        assert _predict(client) == 200  # the service goes on answering meanwhile
        assert client.get("/health/live").status_code == 200
        answered = time.monotonic() - began
        reply = _until_closed(slow)
        closed = time.monotonic() - began
    assert reply.startswith(b"HTTP/1.1 408 ") and b'"error":"body_timeout"' in reply
    assert reply.lower().count(b"connection: close") == 1  # it came twice
    assert answered < BODY_TIMEOUT_S <= closed + 0.1 and closed < BODY_TIMEOUT_S + 3


def test_a_trickled_body_is_cut_off_at_the_deadline(server: RunningServer) -> None:
    with _connect(server) as slow:
        slow.sendall(HEADERS)
        began = time.monotonic()
        # one byte every 0.2 s: each arrives well within any per-read timeout, the whole never.
        # The trickle stops just before the deadline: a byte still on its way when the server
        # closes would make its kernel answer with a reset, which can overtake the 408.
        while not select.select([slow], [], [], 0.2)[0]:
            assert time.monotonic() - began < BODY_TIMEOUT_S + 3, "never cut off"
            if time.monotonic() - began < BODY_TIMEOUT_S - 0.3:
                slow.sendall(b"x")
        reply = _until_closed(slow)
        closed = time.monotonic() - began
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert BODY_TIMEOUT_S - 0.1 <= closed < BODY_TIMEOUT_S + 3


def test_idle_connections_close_and_the_connection_limit_holds(server: RunningServer) -> None:
    with _connect(server) as kept:
        kept.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        began = time.monotonic()
        reply = _until_closed(kept)  # answered, then closed once idle for keep_alive_s
        assert reply.startswith(b"HTTP/1.1 200 ") and time.monotonic() - began < 5
    idle = [_connect(server) for _ in range(6)]  # max_connections: 6
    try:
        time.sleep(0.2)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            full = client.get("/health/live")
        # kennel's JSON error with Retry-After, as every other 503 (uvicorn's was plain text)
        assert full.status_code == 503 and full.headers["retry-after"] == "1"
        assert full.json()["error"] == "overloaded" and "max_connections" in full.json()["detail"]
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert _predict(client) == 200


@pytest.mark.parametrize(
    "path", ["/v1/nowhere", "/v1/admin/reload", "/health/live"]
)  # 404, 401 (no token), 405: answered without reading the body
def test_an_answer_before_the_body_closes_the_connection(server: RunningServer, path: str) -> None:
    with _connect(server) as slow:
        slow.sendall(HEADERS.replace(b"/v1/predict", path.encode()) + b"x")
        began = time.monotonic()
        # the client keeps trickling; the server must not wait for the rest of the body
        while not select.select([slow], [], [], 0.2)[0]:
            assert time.monotonic() - began < BODY_TIMEOUT_S, "never answered"
            slow.sendall(b"x")
        reply = _until_closed(slow)
        closed = time.monotonic() - began
    status = int(reply.split(b" ", 2)[1])
    assert 400 <= status < 500 and b"connection: close" in reply.lower()
    assert closed < BODY_TIMEOUT_S  # closed with the answer, not at the body's deadline


@pytest.mark.parametrize(
    "request_bytes",
    [b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nbroken header\r\n\r\n",
     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"],  # a TLS ClientHello on the plain port
    ids=["garbage", "bad-header", "tls"],
)  # fmt: skip
def test_a_request_that_is_no_http_gets_a_json_400(
    server: RunningServer, request_bytes: bytes
) -> None:
    with _connect(server) as sock:
        sock.sendall(request_bytes)
        reply = _until_closed(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head
    assert json.loads(body) == {
        "error": "bad_request",
        "detail": "malformed HTTP request: it could not be parsed",
    }
    with httpx.Client(base_url=server.url, timeout=30) as client:  # and the server goes on
        assert client.get("/health/live").status_code == 200
