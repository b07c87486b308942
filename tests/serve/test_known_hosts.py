"""A prediction service on loopback answers only to loopback Host names and those in
``serve.hosts``: a web page whose own name is rebound to 127.0.0.1 (DNS rebinding) would
otherwise read the service's answers, predictions and metrics as its own origin's."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from kennel.config import Project
from kennel.db.schema import PredictionRow
from kennel.serve.hosts import loopback_hosts
from kennel.serve.server import RunningServer
from tests.helpers import jpeg
from tests.serving import free_port, served_project, serving_production, wait_until


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return served_project(
        tmp_path_factory.mktemp("hosts"), models=1, poll_s=3600,
        serve={"hosts": ["API.example.com"]},
    )  # fmt: skip


@pytest.fixture(scope="module")
def server(project: Project) -> Iterator[RunningServer]:
    with serving_production(project) as (running, _ws):
        yield running


@pytest.mark.parametrize("bind", ["127.1", "localhost"])
def test_kennel_serve_answers_to_the_name_it_was_bound_by(project: Project, bind: str) -> None:
    """``kennel serve --host 127.1`` prints http://127.1:PORT: that URL must work (the bound
    address alone, 127.0.0.1, was answered to), and a foreign name still gets a 400."""
    port = free_port()
    command = [sys.executable, "-m", "kennel.cli", "serve", "--env", "production", "--host",
               bind, "--port", str(port), "-C", str(project.root)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), timeout=60)
        with httpx.Client(base_url=url, timeout=10) as client:
            for name, status in ((bind, 200), ("127.0.0.1", 200), ("evil.example", 400)):
                answer = client.get("/health/live", headers={"host": f"{name}:{port}"})
                assert answer.status_code == status, (name, answer.text)
    finally:
        process.terminate()
        process.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/live", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/model", "/metrics", "/health/live"])
def test_a_rebound_name_gets_a_json_400_on_every_path(server: RunningServer, path: str) -> None:
    port = server.url.rsplit(":", 1)[1]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.request("POST" if path == "/v1/predict" else "GET", path,
                                content=jpeg(seed=1) if path == "/v1/predict" else None,
                                headers={"host": f"evil.example:{port}",
                                         "content-type": "image/jpeg"})  # fmt: skip
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == "unknown host"
    assert "this service answers to 127.0.0.1, localhost" in body["detail"]
    assert "serve.hosts" in body["detail"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST", "api.example.com"])
def test_loopback_names_and_serve_hosts_are_answered(server: RunningServer, host: str) -> None:
    port = server.url.rsplit(":", 1)[1]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        headers = {"host": f"{host}:{port}", "content-type": "image/jpeg"}
        answer = client.post("/v1/predict", content=jpeg(seed=2), headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["label"] in ("cat", "dog")


def test_two_host_headers_are_refused_whichever_comes_last(server: RunningServer) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    for first, last in (("evil.example", "localhost"), ("localhost", "localhost")):
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            sock.sendall(f"GET /health/live HTTP/1.1\r\nHost: {first}\r\nHost: {last}\r\n"
                         "Connection: close\r\n\r\n".encode())  # fmt: skip
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 400 ") and b"unknown host" in reply, reply[:200]


@pytest.mark.parametrize(
    "bind", ["127.0.0.1", "127.1", "0x7f.1", "127.0.0.2", "::1", "[::1]", "::ffff:127.0.0.1",
             "localhost"],
)  # fmt: skip
def test_every_spelling_of_a_loopback_bind_is_loopback(bind: str) -> None:
    hosts = loopback_hosts(bind)
    assert hosts is not None and hosts[:3] == ["127.0.0.1", "localhost", "[::1]"]


def test_a_service_on_another_address_checks_no_name() -> None:
    assert loopback_hosts("0.0.0.0", ["x"]) is None and loopback_hosts("10.1.2.3") is None
    assert loopback_hosts("127.0.0.2") == ["127.0.0.1", "localhost", "[::1]", "127.0.0.2"]
    assert loopback_hosts("::1", ["Proxy.Example"]) == [
        "127.0.0.1", "localhost", "[::1]", "proxy.example",
    ]  # fmt: skip


def test_a_source_header_reaches_the_log_escaped(server: RunningServer) -> None:
    """C1 controls arrive through a header's latin-1 (CSI, NEL): the source is what
    ``watch --camera`` would accept, escaped, never the raw bytes."""
    assert server.service is not None and server.service.predlog is not None
    raw = "cam\x9b2J\x85two".encode("latin-1")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path in ("/v1/predict", "/v1/predict?form=1"):
            if path.endswith("form=1"):  # the multipart route takes the header too
                answer = client.post("/v1/predict", files={"file": ("a.jpg", jpeg(seed=4))},
                                     headers={"x-kennel-source": raw})  # fmt: skip
            else:
                answer = client.post(path, content=jpeg(seed=3), headers={
                    "content-type": "image/jpeg", "x-kennel-source": raw})  # fmt: skip
            assert answer.status_code == 200, answer.text
    assert server.service.predlog.flush(10)
    with server.service.predlog.db.session() as s:
        sources = set(s.scalars(select(PredictionRow.source)))
    assert "cam\\x9b2J\\x85two" in sources and not any("\x9b" in x for x in sources)
