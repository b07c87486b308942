"""The feed consumer's prediction API bounds a request body while it arrives: a 400 MB upload,
chunked or with a declared length, is a 413 without the process growing by the body's size."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kennel.serve.hosts import loopback_hosts
from kennel.serve.server import RunningServer, start_app_in_thread
from kennel.stream.consumer import MAX_BYTES, create_consumer_app
from kennel.stream.feed import RedisFeed
from kennel.stream.subscriber import ModelSubscriber

MB = 1024 * 1024


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def consumer() -> Iterator[RunningServer]:
    # never started: the size check comes before any model is needed
    feed = RedisFeed("redis://127.0.0.1:6379/0", "kennel:test:unused")
    subscriber = ModelSubscriber(feed, Ed25519PrivateKey.generate().public_key())
    running = start_app_in_thread(create_consumer_app(subscriber))
    yield running
    running.stop()
    feed.close()


def _upload(url: str, total: int, *, chunked: bool) -> tuple[int, dict[str, str], int]:
    """POST ``total`` bytes, stopping as soon as the server answers; (status, body, sent)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(2)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    sock.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n".encode())
    chunk = b"\xff" * MB
    piece = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
    sent = 0
    try:
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered: stop sending
            sock.sendall(piece)
            sent += len(chunk)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
    except (TimeoutError, BrokenPipeError, ConnectionResetError):
        pass  # the server stopped reading (or closed): its answer is waiting
    sock.settimeout(60)
    raw = b""
    while b"\r\n\r\n" not in raw or len(raw.split(b"\r\n\r\n", 1)[1]) < _length(raw):
        data = sock.recv(65536)
        if not data:
            break
        raw += data
    sock.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body[: _length(raw)]), sent


def _length(raw: bytes) -> int:
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_400_mb_body_is_413_without_buffering_it(consumer: RunningServer, chunked: bool) -> None:
    before = _rss()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        status, body, sent = _upload(consumer.url, 400 * MB, chunked=chunked)
    finally:
        done.set()
        sampler.join()
    assert status == 413 and body["error"] == "too_large", body
    # at most the 10 MB limit and buffers, never the 400 MB body
    assert peak - before < MAX_BYTES + 48 * MB, f"RSS grew {(peak - before) / MB:.0f} MB"
    assert sent < 400 * MB  # answered long before the whole body was sent


def test_on_loopback_the_consumer_answers_only_to_loopback_names() -> None:
    """As the prediction service: a page that rebinds its own name to 127.0.0.1 gets a 400."""
    feed = RedisFeed("redis://127.0.0.1:6379/0", "kennel:test:unused")
    subscriber = ModelSubscriber(feed, Ed25519PrivateKey.generate().public_key())
    app = create_consumer_app(subscriber, hosts=loopback_hosts("127.0.0.1", ["app.example"]))
    running = start_app_in_thread(app)
    try:
        port = running.url.rsplit(":", 1)[1]
        with httpx.Client(base_url=running.url, timeout=20) as client:
            for host, status in (("evil.example", 400), ("app.example", 503), ("localhost", 503)):
                answer = client.post("/v1/predict", content=b"x",
                                     headers={"host": f"{host}:{port}"})  # fmt: skip
                assert answer.status_code == status, (host, answer.text)
                if status == 400:
                    assert answer.json()["error"] == "unknown host"
                    assert "this app answers to" in answer.json()["detail"]
    finally:
        running.stop()
        feed.close()
