"""Transient S3 failures, made real: a TCP relay in front of the S3 server resets connections,
answers 503 SlowDown, refuses connections, or starts listening late. The store retries each
with bounded backoff, in one place, and then fails with one line naming the endpoint."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from kennel.errors import NotFoundError, StorageError
from kennel.retry import Backoff
from kennel.storage import ContentStore
from kennel.storage.fsspec_store import (
    BACKOFF,
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    FsspecBlobStore,
)
from tests.conftest import s3_keys
from tests.netfaults import SLOW_DOWN, Proxy


@pytest.fixture
def proxy(s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proxy]:
    host, port = s3_endpoint.removeprefix("http://").split(":")
    relay = Proxy((host, int(port)))
    monkeypatch.setenv("AWS_ENDPOINT_URL", relay.url)
    yield relay
    relay.close()


def test_reset_connections_are_retried(proxy: Proxy, s3_bucket: str) -> None:
    store = FsspecBlobStore(f"s3://{s3_bucket}/a")
    proxy.drop(2)
    assert store.put("k/one", b"payload") is True
    assert proxy.accepted >= 3  # two resets, then the relayed connection
    proxy.drop(2)
    assert ContentStore(store).blobs.get("k/one") == b"payload"


def test_slow_down_answers_are_retried(proxy: Proxy, s3_bucket: str) -> None:
    store = FsspecBlobStore(f"s3://{s3_bucket}/a")
    proxy.answer(2, SLOW_DOWN)  # S3's 503 throttling, twice
    assert store.put("k/two", b"payload") is True
    assert store.get("k/two") == b"payload"


def test_a_store_that_starts_late_is_waited_for(
    s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = s3_endpoint.removeprefix("http://").split(":")
    late = Proxy((host, int(port)), listen_after=0.4)  # refuses for 0.4 s, then relays
    monkeypatch.setenv("AWS_ENDPOINT_URL", late.url)
    try:
        store = FsspecBlobStore(f"s3://{s3_bucket}/a")
        assert store.put("k/late", b"payload") is True
    finally:
        late.close()
    assert late.accepted >= 1


def test_a_lasting_outage_fails_in_bounded_time_naming_the_endpoint(
    proxy: Proxy, s3_bucket: str
) -> None:
    store = FsspecBlobStore(f"s3://{s3_bucket}/a")
    proxy.drop(100)  # every try is reset
    began = time.monotonic()
    with pytest.raises(StorageError) as failed:
        store.put("k/three", b"payload")
    assert time.monotonic() - began < BACKOFF.budget_s + 5
    message = str(failed.value)
    assert f"127.0.0.1:{proxy.port}" in message and "unreachable" in message
    assert "\n" not in message and "testing" not in message  # one line, no credentials
    assert proxy.accepted >= BACKOFF.attempts
    proxy.heal()
    proxy.cut()  # refused, not reset: the same one-line error
    with pytest.raises(StorageError, match=f"127.0.0.1:{proxy.port}"):
        store.check()
    with pytest.raises(StorageError, match="unreachable"):
        store.exists("k/three")  # an outage is an error, never "not there"
    proxy.restore()
    assert not store.exists("k/three")  # nothing was half-written
    assert store.put("k/three", b"payload") is True


def test_the_endpoint_may_be_named_in_the_url(
    s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the URL's endpoint wins
    host_port = s3_endpoint.removeprefix("http://")
    store = FsspecBlobStore(f"s3+http://{host_port}/{s3_bucket}/named")
    store.check()
    assert store.put("k", b"x") and store.url == f"s3+http://{host_port}/{s3_bucket}/named"
    assert s3_keys(s3_bucket, endpoint=s3_endpoint) == ["named/k"]
    with pytest.raises(StorageError, match="take no credentials"):
        FsspecBlobStore(f"s3+http://key:secret@{host_port}/{s3_bucket}")
    with pytest.raises(StorageError, match="bucket/prefix"):
        FsspecBlobStore(f"s3+https://{host_port}")


def test_a_missing_bucket_is_named(s3_bucket: str) -> None:
    store = FsspecBlobStore(f"s3://{s3_bucket}-gone/a")
    with pytest.raises(NotFoundError, match=f"no bucket '{s3_bucket}-gone'"):
        store.check()
    with pytest.raises(StorageError, match="cannot write"):
        store.put("k", b"x")


def test_a_hung_server_fails_after_the_documented_read_timeout(
    proxy: Proxy, s3_bucket: str
) -> None:
    """A server that accepts and never answers: each try waits READ_TIMEOUT_S (5 s, as
    docs/operations.md says), not botocore's 60 s or the 30 s kennel once set."""
    assert (CONNECT_TIMEOUT_S, READ_TIMEOUT_S) == (5, 5)
    once = FsspecBlobStore(f"s3://{s3_bucket}/a", backoff=Backoff(attempts=1))
    proxy.stall(1)
    began = time.monotonic()
    with pytest.raises(StorageError) as failed:
        once.check()
    took = time.monotonic() - began
    assert READ_TIMEOUT_S - 0.5 < took < READ_TIMEOUT_S + 3, took
    message = str(failed.value)
    assert "unreachable" in message and f"127.0.0.1:{proxy.port}" in message
    assert "\n" not in message

    # a write too: botocore's Expect: 100-continue made aiohttp wait for the server forever
    store = FsspecBlobStore(f"s3://{s3_bucket}/a")  # the default retries: a stall is retried
    proxy.stall(1)
    began = time.monotonic()
    assert store.put("k/after-a-stall", b"payload") is True
    took = time.monotonic() - began
    assert READ_TIMEOUT_S - 0.5 < took < READ_TIMEOUT_S + BACKOFF.budget_s + 3, took
    assert store.get("k/after-a-stall") == b"payload"
