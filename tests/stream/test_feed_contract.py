"""One contract over every model feed: the in-memory one and a real Redis Stream at
127.0.0.1:6379 answer the three ``Feed`` methods the same way (ids, ordering, blocking reads,
trimming, refusals), carry signed announcements byte for byte, and drive a subscriber alike."""

from __future__ import annotations

import inspect
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kennel.errors import ServiceError
from kennel.stream import signing
from kennel.stream.feed import FILE_PREFIX, Feed, Manifest, RedisFeed, message
from kennel.stream.memfeed import MemoryFeed
from kennel.stream.subscriber import ModelSubscriber
from tests.conftest import unavailable

REDIS = "redis://127.0.0.1:6379/0"
MakeFeed = Callable[..., RedisFeed | MemoryFeed]


@pytest.fixture(params=["memory", "redis"])
def make_feed(request: pytest.FixtureRequest) -> Iterator[MakeFeed]:
    """A factory of empty feeds (``maxlen`` as the feed takes it), all closed afterwards."""
    made: list[RedisFeed | MemoryFeed] = []
    if request.param == "redis":
        client = redis.Redis.from_url(REDIS, socket_connect_timeout=2)
        try:
            client.ping()
        except redis.RedisError as exc:
            unavailable(f"Redis unreachable at 127.0.0.1:6379: {exc.__class__.__name__}")

        def make(maxlen: int = 50) -> RedisFeed | MemoryFeed:
            made.append(RedisFeed(REDIS, f"kennel:test:{uuid.uuid4().hex[:12]}", maxlen=maxlen))
            return made[-1]

    else:

        def make(maxlen: int = 50) -> RedisFeed | MemoryFeed:
            made.append(MemoryFeed(maxlen=maxlen))
            return made[-1]

    yield make
    for feed in made:
        if isinstance(feed, RedisFeed):
            client.delete(feed.stream)
        feed.close()
    if request.param == "redis":
        client.close()


@pytest.fixture
def feed(make_feed: MakeFeed) -> RedisFeed | MemoryFeed:
    return make_feed()


def _entries(count: int, tag: str = "") -> list[dict[str, bytes]]:
    """Entries with several fields, binary values and an empty one, in a chosen order."""
    return [
        {"n": f"{tag}{i}".encode(), "binary": bytes(range(256)) * (i + 1), "empty": b""}
        for i in range(count)
    ]


def _id(entry: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)-(\d+)", entry)
    assert match, entry
    return int(match[1]), int(match[2])


def test_both_feeds_have_the_protocol_signatures(feed: RedisFeed | MemoryFeed) -> None:
    protocol: Feed = feed  # and mypy checks the same
    for name in ("publish", "read", "latest"):
        expected = inspect.signature(getattr(Feed, name)).parameters
        actual = inspect.signature(getattr(protocol, name)).parameters
        assert list(actual) == [p for p in expected if p != "self"], name


def test_publish_gives_growing_ids_and_read_returns_entries_oldest_first(
    feed: RedisFeed | MemoryFeed,
) -> None:
    published = _entries(5)
    ids = [feed.publish(fields) for fields in published]
    assert [_id(i) for i in ids] == sorted({_id(i) for i in ids})  # distinct, growing
    read = feed.read("0-0", 100)
    assert read == list(zip(ids, published, strict=True))
    assert [list(fields) for _, fields in read] == [["n", "binary", "empty"]] * 5  # field order


def test_read_after_an_id_returns_only_newer_entries(feed: RedisFeed | MemoryFeed) -> None:
    published = _entries(5)
    ids = [feed.publish(fields) for fields in published]
    assert feed.read(ids[2], 100) == list(zip(ids[3:], published[3:], strict=True))
    assert feed.read(ids[-1], 100) == []
    milliseconds = ids[3].split("-")[0]  # an id without its sequence means sequence 0
    assert [i for i, _ in feed.read(milliseconds, 100)] == [
        i for i in ids if _id(i) > (int(milliseconds), 0)
    ]
    assert feed.read(f"{_id(ids[-1])[0] + 10**9}-0", 100) == []  # an id from the future


def test_latest_is_newest_first(feed: RedisFeed | MemoryFeed) -> None:
    assert feed.latest(5) == []  # nothing published yet
    published = _entries(4)
    ids = [feed.publish(fields) for fields in published]
    pairs = list(zip(ids, published, strict=True))
    assert feed.latest(2) == pairs[:1:-1]
    assert feed.latest(100) == pairs[::-1]


def test_catch_up_with_latest_then_follow_with_read(feed: RedisFeed | MemoryFeed) -> None:
    """How a subscriber starts: the newest entry, then only what is published after it."""
    for fields in _entries(3, "old"):
        feed.publish(fields)
    newest = feed.latest(1)[0][0]
    assert feed.read(newest, 50) == []
    later = _entries(2, "new")
    ids = [feed.publish(fields) for fields in later]
    assert feed.read(newest, 50) == list(zip(ids, later, strict=True))


def test_a_blocked_read_wakes_when_an_entry_is_published(feed: RedisFeed | MemoryFeed) -> None:
    last = feed.publish({"n": b"before"})
    for block_ms in (5000, 0):  # 0: wait for as long as it takes
        fields = {"n": f"after {block_ms}".encode()}
        publisher = threading.Timer(0.2, feed.publish, args=(fields,))
        started = time.monotonic()
        publisher.start()
        read = feed.read(last, block_ms)
        waited = time.monotonic() - started
        publisher.join()
        assert [f for _, f in read] == [fields]
        assert 0.1 < waited < 3.0, waited
        last = read[0][0]


def test_a_read_with_nothing_new_returns_empty_after_block_ms(
    feed: RedisFeed | MemoryFeed,
) -> None:
    last = feed.publish({"n": b"only"})
    started = time.monotonic()
    assert feed.read(last, 300) == []
    assert 0.25 < time.monotonic() - started < 3.0
    assert feed.read("0-0", 5000) == [(last, {"n": b"only"})]  # at once: no wait when found


def test_the_newest_maxlen_entries_are_kept(make_feed: MakeFeed) -> None:
    """Trimming keeps at least the newest ``maxlen`` (Redis trims lazily, so perhaps more)."""
    feed = make_feed(maxlen=3)
    published = _entries(10)
    ids = [feed.publish(fields) for fields in published]
    kept = feed.latest(100)
    assert 3 <= len(kept) <= 10
    assert kept == list(zip(ids, published, strict=True))[::-1][: len(kept)]
    assert feed.read("0-0", 100) == kept[::-1]


def test_concurrent_publishers_get_distinct_ordered_ids(make_feed: MakeFeed) -> None:
    feed = make_feed(maxlen=1000)
    ids: dict[int, list[str]] = {}

    def publish(worker: int) -> None:
        ids[worker] = [feed.publish({"w": str(worker).encode(), "i": str(i).encode()})
                       for i in range(20)]  # fmt: skip

    workers = [threading.Thread(target=publish, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    read = feed.read("0-0", 100)
    assert len(read) == 80 and [_id(i) for i, _ in read] == sorted({_id(i) for i, _ in read})
    for w, own in ids.items():  # each publisher's entries in its own order, under its ids
        mine = [(i, f) for i, f in read if f["w"] == str(w).encode()]
        assert [i for i, _ in mine] == own
        assert [f["i"] for _, f in mine] == [str(i).encode() for i in range(20)]


def test_refused_arguments_are_service_errors(feed: RedisFeed | MemoryFeed) -> None:
    feed.publish({"n": b"1"})
    with pytest.raises(ServiceError):
        feed.publish({})
    with pytest.raises(ServiceError):
        feed.read("not-an-id", 10)
    with pytest.raises(ServiceError):
        feed.read("0-0", -1)
    with pytest.raises(ServiceError):
        feed.latest(0)


def test_a_signed_announcement_crosses_the_feed_byte_for_byte(
    feed: RedisFeed | MemoryFeed,
) -> None:
    key = Ed25519PrivateKey.generate()
    files = {"model.onnx": bytes(range(256)) * 40, "metadata.json": b'{"format": 1}'}
    sent = message(files, name="pets", version=3, alias="production", key=key)
    entry = feed.publish(sent)
    [(read_id, got)] = feed.read("0-0", 100)
    assert read_id == entry and got == sent
    assert signing.verify(key.public_key(), got["signature"], got["manifest"])
    manifest = Manifest(**json.loads(got["manifest"]))
    assert {n: got[FILE_PREFIX + n] for n in manifest.files} == files
    assert not signing.verify(Ed25519PrivateKey.generate().public_key(), got["signature"],
                              got["manifest"])  # fmt: skip


def test_a_subscriber_catches_up_by_signed_sequence_then_follows_in_order(
    feed: RedisFeed | MemoryFeed,
) -> None:
    """The subscriber's view of either feed: catch-up ranks what is kept by signed sequence
    (newest entry first on a tie), following reads new entries in publish order. These
    bundles do not load, so each attempt is a rejection and the rejections show the order."""
    key = Ed25519PrivateKey.generate()

    def announce(version: int, seq: int) -> str:
        fields = message({"model.onnx": b"x"}, name="pets", version=version, alias="production",
                         key=key)  # fmt: skip
        manifest = {**json.loads(fields["manifest"]), "seq": seq}
        payload = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        return feed.publish({**fields, "manifest": payload, "signature": key.sign(payload)})

    first, second, third = announce(1, 100), announce(2, 300), announce(3, 200)
    subscriber = ModelSubscriber(feed, key.public_key(), name="pets", block_ms=50)
    subscriber.catch_up()
    assert [r.entry for r in subscriber.rejected] == [second, third, first]
    assert all(r.reason.startswith("bundle does not verify") for r in subscriber.rejected)
    assert subscriber.last_id == third
    assert subscriber.poll_once() == 0
    fourth, fifth = announce(4, 50), announce(5, 400)
    assert subscriber.poll_once() == 2
    assert [r.entry for r in subscriber.rejected[3:]] == [fourth, fifth]
    assert subscriber.current is None


def test_a_read_waits_as_long_as_asked_past_ten_seconds(feed: RedisFeed | MemoryFeed) -> None:
    """Longer than RedisFeed's 10 s timeout for every other call: a read blocking 12 s and one
    blocking for ever, side by side, are both woken by a publish at 11 s."""
    last = feed.publish({"n": b"before"})
    results: dict[int, tuple[object, float]] = {}

    def wait(block_ms: int) -> None:
        started = time.monotonic()
        try:
            results[block_ms] = (feed.read(last, block_ms), time.monotonic() - started)
        except ServiceError as exc:
            results[block_ms] = (exc, time.monotonic() - started)

    readers = [threading.Thread(target=wait, args=(b,), daemon=True) for b in (12000, 0)]
    for reader in readers:
        reader.start()
    time.sleep(11)
    fields = {"n": b"after 11 s"}
    entry = feed.publish(fields)
    for reader in readers:
        reader.join(timeout=5)
    for block_ms in (12000, 0):
        read, waited = results[block_ms]
        assert read == [(entry, fields)], (block_ms, read)
        assert 10.9 < waited < 12.0, (block_ms, waited)


def test_a_silent_or_dead_redis_is_a_service_error_in_bounded_time() -> None:
    """Every call but a blocking read gives up after ``timeout_s`` on a server that accepts and
    never answers; a refused connection fails at once, even for a read that waits for ever."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        feed = RedisFeed(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", "s", timeout_s=0.5)
        try:
            for call in (lambda: feed.publish({"n": b"1"}), lambda: feed.latest(1),
                         lambda: feed.read("0-0", 100)):  # fmt: skip
                started = time.monotonic()
                with pytest.raises(ServiceError, match=r"Timeout|timed out"):
                    call()
                assert time.monotonic() - started < 2.0
        finally:
            feed.close()
        port = silent.getsockname()[1]
    dead = RedisFeed(f"redis://127.0.0.1:{port}/0", "s")  # nothing listens there any more
    try:
        for block_ms in (0, 12000, 100):
            started = time.monotonic()
            with pytest.raises(ServiceError, match=re.escape(f"127.0.0.1:{port}")):
                dead.read("0-0", block_ms)
            assert time.monotonic() - started < 2.0
    finally:
        dead.close()
