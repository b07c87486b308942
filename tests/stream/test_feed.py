"""Pattern 3, the model published as data, over a real Redis: a consuming app hot-loads each
signed release, refuses tampered, forged and stale announcements, and keeps serving."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kennel.serve.auth import Identity
from kennel.serve.server import start_app_in_thread
from kennel.stream import signing
from kennel.stream.consumer import create_consumer_app
from kennel.stream.feed import FILE_PREFIX, RedisFeed, message
from kennel.stream.subscriber import ModelSubscriber
from kennel.wiring import Workspace
from tests.conftest import unavailable
from tests.helpers import jpeg
from tests.serving import served_project, wait_until

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


def test_consumer_follows_signed_releases_and_refuses_the_rest(stream: str, tmp_path: Path) -> None:
    project = served_project(tmp_path, models=2)
    ws = Workspace(project)
    config = project.config.feed.model_copy(update={"url": REDIS, "stream": stream})
    releases = ws.releases()
    releases.config = releases.config.model_copy(update={"feed": config})
    ws.registry.set_alias("pets", "production", 1, actor="t", reason="first release")
    first = releases.publish("pets@1", "production", who=Identity.system("test"))
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
        assert feed.read("0-0", 0)[0][0] == first
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
