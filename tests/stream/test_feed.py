"""Pattern 3, the model published as data, over a real Redis: a consuming app hot-loads each
signed release, refuses tampered, forged and stale announcements, and keeps serving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kennel.config import Project
from kennel.errors import ServiceError
from kennel.serve.auth import Identity
from kennel.serve.server import start_app_in_thread
from kennel.stream import signing
from kennel.stream.consumer import create_consumer_app
from kennel.stream.feed import FILE_PREFIX, RedisFeed, message
from kennel.stream.memfeed import MemoryFeed
from kennel.stream.subscriber import STATE_FILE, ModelSubscriber
from kennel.wiring import Workspace
from tests.conftest import unavailable
from tests.helpers import jpeg
from tests.serving import free_port, served_project, unloadable, wait_until

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def stream() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis unreachable at 127.0.0.1:6379: {exc.__class__.__name__}")
    name = f"kennel:test:{uuid.uuid4().hex[:8]}"
    yield name
    client.delete(name)
    client.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return served_project(tmp_path_factory.mktemp("feed"), models=2)


def test_consumer_follows_signed_releases_and_refuses_the_rest(
    stream: str, project: Project
) -> None:
    ws = Workspace(project)
    config = project.config.feed.model_copy(update={"url": REDIS, "stream": stream})
    releases = ws.releases()
    releases.config = releases.config.model_copy(update={"feed": config})
    ws.registry.set_alias("pets", "production", 1, actor="t", reason="first release")
    first = releases.publish("pets@production", "production", who=Identity.system("test"))
    assert (first.model, first.version) == ("pets@1", 1)  # the version announced, resolved
    feed = RedisFeed(REDIS, stream)
    key = signing.load_public(project.state_dir / "keys" / signing.PUBLIC)
    subscriber = ModelSubscriber(feed, key, name="pets", alias="production", block_ms=100)
    subscriber.start()
    running = start_app_in_thread(create_consumer_app(subscriber))
    try:
        assert subscriber.current is not None and subscriber.current.version == 1
        image = jpeg(width=120, height=90, seed=5)
        for version in (1, 2):
            if version == 2:  # a release through the registry announces itself
                event = ws.registry.set_alias("pets", "production", 2, actor="t", reason="r")
                assert releases.announce(event, who=Identity.system("t")) is not None
                wait_until(
                    lambda: subscriber.current is not None and subscriber.current.version == 2
                )
            answer = httpx.post(running.url + "/v1/predict", content=image).json()
            expected = ws.predictor(f"pets@{version}").predict_one(image)
            assert answer["model"] == {"name": "pets", "version": version}
            assert answer["label"] == expected.label
            for label, p in expected.probabilities.items():
                assert answer["probabilities"][label] == pytest.approx(p, abs=1e-6)

        files = {
            name: ws.registry.read_file(ws.registry.resolve("pets@1"), name)
            for name in ws.registry.resolve("pets@1").files
        }
        own = signing.load_or_create(project.state_dir / "keys")
        tampered = message(files, name="pets", version=1, alias="production", key=own)
        onnx = bytearray(tampered[FILE_PREFIX + "model.onnx"])
        onnx[len(onnx) // 2] ^= 0xFF
        tampered[FILE_PREFIX + "model.onnx"] = bytes(onnx)
        forged = message(files, name="pets", version=1, alias="production",
                         key=Ed25519PrivateKey.generate())  # fmt: skip
        replay = dict(feed.read("0-0", 0)[0][1])  # the original v1 announcement, stale now
        assert feed.read("0-0", 0)[0][0] == first.entry
        for fields in (tampered, forged, replay):
            feed.publish(fields)
        wait_until(lambda: len(subscriber.rejected) == 3)
        reasons = [r.reason for r in subscriber.rejected]
        assert reasons[0].startswith("tampered: model.onnx")
        assert reasons[1].startswith("bad signature")
        assert reasons[2].startswith("stale")
        assert subscriber.current.version == 2  # still serving the last good model
        assert (
            httpx.post(running.url + "/v1/predict", content=image).json()["model"]["version"] == 2
        )
        state = httpx.get(running.url + "/v1/model").json()
        assert [x["version"] for x in state["loaded"]] == [1, 2] and len(state["rejected"]) == 3

        # a genuine rollback is newer than everything before it, so it is followed
        event = ws.registry.set_alias("pets", "production", 1, actor="t", reason="rollback")
        releases.announce(event, who=Identity.system("t"))
        wait_until(lambda: subscriber.current is not None and subscriber.current.version == 1)
        bad = httpx.post(running.url + "/v1/predict", content=b"not an image")
        assert bad.status_code == 422 and bad.json()["error"] == "invalid_image"
    finally:
        running.stop()
        subscriber.stop()
        feed.close()
        ws.close()


def _signed(
    ws: Workspace, version: int, minutes_ago: int, *, broken: bool = False
) -> dict[str, bytes]:
    """The project's own signed announcement of pets@VERSION, dated ``minutes_ago``."""
    model = ws.registry.resolve(f"pets@{min(version, 2)}")
    files = {name: ws.registry.read_file(model, name) for name in model.files}
    if broken:
        files = unloadable(files, version)
    key = signing.load_or_create(ws.project.state_dir / "keys")
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return message(files, name="pets", version=version, alias="production", key=key, at=at)


def test_sequence_survives_a_restart_and_unloadable_releases_are_refused(
    stream: str, project: Project, tmp_path: Path
) -> None:
    ws = Workspace(project)
    feed = RedisFeed(REDIS, stream)
    old, broken, new = _signed(ws, 1, 30), _signed(ws, 3, 20, broken=True), _signed(ws, 2, 10)
    key = signing.load_public(project.state_dir / "keys" / signing.PUBLIC)

    def subscriber() -> ModelSubscriber:
        return ModelSubscriber(
            feed, key, name="pets", alias="production", block_ms=50, state_dir=tmp_path / "s"
        )

    first = subscriber()
    feed.publish(old)
    first.start()
    try:
        assert first.current is not None and first.current.version == 1
        feed.publish(broken)  # signed, every hash right, but ONNX Runtime refuses the graph
        wait_until(lambda: len(first.rejected) == 1, timeout=10)
        assert first.rejected[0].reason.startswith("cannot be loaded")
        feed.publish(new)  # the feed is still followed
        wait_until(lambda: first.current is not None and first.current.version == 2, timeout=10)
        assert first._thread.is_alive()
    finally:
        first.stop()
    state = json.loads((tmp_path / "s" / STATE_FILE).read_text())
    assert state["seq"] == json.loads(new["manifest"])["seq"] and state["version"] == 2

    feed.publish(old)  # someone re-adds the old signed v1 announcement: the newest entry now
    second = subscriber()  # a restart: a new object reading the same state folder
    second.start()
    try:
        assert second.current is not None and second.current.version == 2
        assert [x.version for x in second.loaded] == [2]  # v2 resumed at its own sequence
    finally:
        second.stop()
    # a subscriber with no state yet takes the highest signed sequence, not the newest entry
    fresh = ModelSubscriber(
        feed, key, name="pets", alias="production", block_ms=50, state_dir=tmp_path / "fresh"
    )
    fresh.start()
    try:
        assert fresh.current is not None and fresh.current.version == 2
    finally:
        fresh.stop()
        feed.close()
        ws.close()


def test_subscribe_cli_keeps_its_sequence_across_kill_9(stream: str, project: Project) -> None:
    ws = Workspace(project)
    feed = RedisFeed(REDIS, stream)
    old, new = _signed(ws, 1, 30), _signed(ws, 2, 10)
    for fields in (old, new):
        feed.publish(fields)
    port = free_port()
    command = [sys.executable, "-m", "kennel.cli", "subscribe", "--url", REDIS, "--stream", stream,
               "--port", str(port), "-C", str(project.root)]  # fmt: skip

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def model() -> dict[str, object] | None:
        try:
            answer: dict[str, object] = httpx.get(f"http://127.0.0.1:{port}/v1/model").json()
        except httpx.HTTPError:
            return None
        return answer if answer["model"] is not None else None

    proc = start()
    try:
        wait_until(lambda: model() is not None, timeout=60)
        assert model() == {**(model() or {}), "model": {"name": "pets", "version": 2}}
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # the stream is trimmed of v2 and the old signed v1 announcement re-added: only the
        # sequence the subscriber wrote down before it was killed tells that v1 is a downgrade
        v2_entry = feed.latest(1)[0][0]
        redis.Redis.from_url(REDIS).xdel(stream, v2_entry)
        feed.publish(old)
        proc = start()

        def answered() -> dict[str, object] | None:
            try:
                state: dict[str, object] = httpx.get(f"http://127.0.0.1:{port}/v1/model").json()
            except httpx.HTTPError:
                return None
            return state if state["rejected"] else None

        wait_until(lambda: answered() is not None, timeout=60)
        state = answered() or {}
        assert state["model"] is None  # no downgrade to 1: nothing newer is on the stream
        rejected = state["rejected"]
        assert isinstance(rejected, list) and rejected[0]["reason"].startswith("stale")
    finally:
        proc.kill()
        proc.wait(10)
        feed.close()
        ws.close()


def test_subscribe_keeps_the_latest_refusals_and_reports_each_once(
    stream: str, project: Project, tmp_path: Path
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "kennel.cli", "subscribe", "--url", REDIS, "--stream", stream,
               "--port", str(port), "-C", str(project.root)]  # fmt: skip
    out = tmp_path / "subscribe.out"

    def state() -> dict[str, object] | None:
        try:
            answer: dict[str, object] = httpx.get(f"http://127.0.0.1:{port}/v1/model").json()
        except httpx.HTTPError:
            return None
        return answer

    with out.open("wb") as sink, subprocess.Popen(command, stdout=sink, stderr=sink) as proc:
        try:
            wait_until(lambda: state() is not None, timeout=60)
            client = redis.Redis.from_url(REDIS)
            pipe = client.pipeline()
            for i in range(3000):  # anyone who may write to the stream can add junk
                pipe.xadd(stream, {"junk": str(i)})
            junk = [entry.decode() for entry in pipe.execute()]
            client.close()
            wait_until(lambda: (state() or {}).get("rejected_total") == 3000, timeout=60)
            answer = state() or {}
        finally:
            proc.terminate()
            proc.wait(10)
    rejected = answer["rejected"]
    assert isinstance(rejected, list) and [r["entry"] for r in rejected] == junk[-50:]
    assert rejected[-1]["reason"] == "not a model announcement (no manifest or signature)"
    printed = out.read_text()
    assert all(printed.count(f"entry {entry}:") == 1 for entry in junk), printed[-2000:]


def test_catch_up_reads_the_whole_stream_not_only_its_newest_entries(
    stream: str, project: Project
) -> None:
    """The valid announcement is the oldest of many entries (junk added after it, more than
    one page of them): a subscriber that starts then still loads it."""
    ws = Workspace(project)
    feed = RedisFeed(REDIS, stream, maxlen=200)
    release = feed.publish(_signed(ws, 2, 5))
    forged = message({"model.onnx": b"x"}, name="pets", version=9, alias="production",
                     key=Ed25519PrivateKey.generate())  # fmt: skip
    junk = [feed.publish({"junk": str(i).encode()}) for i in range(60)] + [feed.publish(forged)]
    key = signing.load_public(project.state_dir / "keys" / signing.PUBLIC)
    subscriber = ModelSubscriber(feed, key, name="pets", alias="production", block_ms=50)
    subscriber.start()
    try:
        assert subscriber.last_error is None
        assert subscriber.current is not None and subscriber.current.version == 2
        assert [x.entry for x in subscriber.loaded] == [release]
        assert subscriber.last_id == junk[-1]  # following goes on after the newest entry
        assert subscriber.rejected == []  # the best one loaded, nothing else was tried
    finally:
        subscriber.stop()
        feed.close()
        ws.close()


def test_an_entry_with_a_field_name_that_is_not_utf8_is_refused_and_the_feed_followed(
    stream: str, project: Project
) -> None:
    """Another client writes field names Redis takes as any bytes: such an entry does not
    stop the catch-up, is refused with its bytes shown while following, and the next
    release still loads."""
    ws = Workspace(project)
    feed = RedisFeed(REDIS, stream)
    client = redis.Redis.from_url(REDIS)
    v1 = _signed(ws, 1, 10)
    client.xadd(stream, {k.encode(): v for k, v in v1.items()})
    garbled = client.xadd(stream, {b"manifest\xff": v1["manifest"], b"\xfe\xff": b"x"}).decode()
    key = signing.load_public(project.state_dir / "keys" / signing.PUBLIC)
    subscriber = ModelSubscriber(feed, key, name="pets", alias="production", block_ms=50)
    subscriber.start()  # catch-up reads the garbled entry too
    running = start_app_in_thread(create_consumer_app(subscriber))
    try:
        assert subscriber.last_error is None and subscriber.last_id == garbled
        assert subscriber.current is not None and subscriber.current.version == 1
        late = client.xadd(stream, {b"\xc3\x28": b"not UTF-8 either"}).decode()
        wait_until(lambda: len(subscriber.rejected) == 1)
        [rejection] = subscriber.rejected
        assert rejection.entry == late
        assert rejection.reason == "field b'\\xc3(' is not UTF-8 text: not a model announcement"
        release = feed.publish(_signed(ws, 2, 1))
        wait_until(lambda: subscriber.current is not None and subscriber.current.version == 2)
        assert subscriber.loaded[-1].entry == release and subscriber.last_error is None
        state = httpx.get(running.url + "/v1/model").json()
        assert state["rejected"] == [{"entry": late, "reason": rejection.reason}]
    finally:
        running.stop()
        subscriber.stop()
        client.close()
        feed.close()
        ws.close()


@pytest.mark.parametrize("kind", ["redis", "memory"])
def test_a_field_name_that_is_not_utf8_text_is_never_published(stream: str, kind: str) -> None:
    feed: RedisFeed | MemoryFeed = RedisFeed(REDIS, stream) if kind == "redis" else MemoryFeed()
    try:
        for name in ("file:model\udcff.onnx", "\ud800"):
            with pytest.raises(ServiceError, match="a field name must be UTF-8 text"):
                feed.publish({"manifest": b"{}", name: b"x"})
        assert feed.latest(5) == []  # nothing half-written
    finally:
        feed.close()


def test_a_damaged_feed_state_is_refused_in_words(tmp_path: Path) -> None:
    """A subscriber fails closed on a state file it cannot read, saying what is wrong with it
    (a missing key was its bare repr, a list a TypeError about indices)."""
    from kennel.errors import ConfigError

    key = Ed25519PrivateKey.generate().public_key()
    state = tmp_path / "s" / STATE_FILE
    state.parent.mkdir()
    for text, said in (
        ('{"seq": -5}', "it has no 'manifest_sha256'"),
        ("[1, 2]", "it holds a JSON list, not an object"),
        ("{not json", "Expecting property name"),
        ('{"seq": 1e400, "manifest_sha256": "x"}', "its seq inf is no sequence number"),
        ('{"seq": true, "manifest_sha256": "x"}', "its seq True is no sequence number"),
        ('{"seq": -1, "manifest_sha256": "x"}', "its seq -1 is no sequence number"),
        ('{"seq": 3, "manifest_sha256": null}', "its manifest_sha256 'None' is no sha256"),
    ):
        state.write_text(text)
        with pytest.raises(ConfigError) as refused:
            ModelSubscriber(MemoryFeed(), key, state_dir=tmp_path / "s")
        line = str(refused.value)
        assert line.startswith(f"unreadable feed state {state}: {said}"), line
