"""The dashboard and the feed consumer get the service's protection against slow clients
(issue #12 review): a body that stalls is a 408 within ``serve.body_timeout_s`` and the
connection closes, while other requests are answered meanwhile."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kennel.config import ServeConfig, init_project
from kennel.serve.server import RunningServer, start_app_in_thread
from kennel.stream.consumer import create_consumer_app
from kennel.stream.feed import RedisFeed
from kennel.stream.subscriber import ModelSubscriber
from kennel.ui.app import create_app
from kennel.wiring import Workspace

TIMEOUT_S = 1.5


def _stall(running: RunningServer, path: str, content_type: str) -> tuple[bytes, float]:
    """Send the headers and a few bytes of a 5000-byte body, then nothing: what comes back
    and after how long, while a health check is answered meanwhile."""
    host, port = running.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as slow:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: 5000\r\n\r\n"
        )
        slow.sendall(head.encode() + b"token=abc")
        began = time.monotonic()
        assert httpx.get(f"{running.url}/health/live", timeout=10).status_code < 500
        reply = b""
        while chunk := slow.recv(65536):
            reply += chunk
        return reply, time.monotonic() - began


def test_the_dashboard_cuts_off_a_stalled_form(tmp_path: Path) -> None:
    project, _ = init_project(tmp_path / "p")
    config = yaml.safe_load((project.root / "kennel.yaml").read_text())
    config.setdefault("serve", {})["body_timeout_s"] = TIMEOUT_S
    (project.root / "kennel.yaml").write_text(yaml.safe_dump(config))
    ws = Workspace.load(project.root)
    running = start_app_in_thread(create_app(ws), settings=ws.project.config.serve)
    try:
        reply, took = _stall(running, "/login", "application/x-www-form-urlencoded")
    finally:
        running.stop()
        ws.close()
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert b"Traceback" not in reply
    assert TIMEOUT_S - 0.1 <= took < TIMEOUT_S + 5


def test_the_feed_consumer_cuts_off_a_stalled_upload() -> None:
    feed = RedisFeed("redis://127.0.0.1:6379/0", "kennel:test:unused")
    subscriber = ModelSubscriber(feed, Ed25519PrivateKey.generate().public_key())
    app = create_consumer_app(subscriber, body_timeout_s=TIMEOUT_S)
    running = start_app_in_thread(app, settings=ServeConfig(body_timeout_s=TIMEOUT_S))
    try:
        reply, took = _stall(running, "/v1/predict", "image/jpeg")
    finally:
        running.stop()
        feed.close()
    assert reply.startswith(b"HTTP/1.1 408 ") and b'"error":"body_timeout"' in reply
    assert TIMEOUT_S - 0.1 <= took < TIMEOUT_S + 5
