"""Pattern 2 over messaging: a real RabbitMQ round trip answers like the in-process Predictor."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from kennel.stream.rpc import RpcClient, RpcWorker
from kennel.wiring import Workspace
from tests.helpers import jpeg
from tests.serving import served_project


def test_rpc_worker_answers_like_the_predictor(rabbitmq: str, tmp_path: Path) -> None:
    project = served_project(tmp_path, models=1)
    ws = Workspace(project)
    try:
        predictor = ws.predictor("pets@1")
    finally:
        ws.close()
    queue = f"kennel.test.{uuid.uuid4().hex[:8]}"
    worker = RpcWorker(predictor, url=rabbitmq, queue=queue, max_bytes=64 * 1024)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.wait_ready()
    client = RpcClient(rabbitmq, queue)
    try:
        for seed in range(5):
            image = jpeg(70, 50, seed=seed)
            answer = client.predict(image)
            expected = predictor.predict_one(image)
            assert answer["label"] == expected.label
            assert answer["probabilities"] == pytest.approx(expected.probabilities, abs=1e-9)
            assert answer["model"] == {"name": "pets", "version": 1}
        bad = client.predict(b"not an image")
        assert bad["error"] == "invalid_image"
        # over the limit (serve.max_upload_bytes from the CLI), a valid picture and all: not
        # decoded, answered at once, as the REST service answers 413
        padded = jpeg(70, 50, seed=1) + bytes(64 * 1024)
        big = client.predict(padded)
        assert big == {
            "error": "too_large",
            "detail": f"message of {len(padded)} bytes exceeds {64 * 1024} bytes",
        }
    finally:
        client.channel.queue_delete(queue)
        client.close()
        worker.stop()
        thread.join(10)
    assert (worker.handled, worker.rejected) == (7, 2)


def test_rpc_worker_logs_every_answer_and_follows_its_environment(
    rabbitmq: str, tmp_path: Path
) -> None:
    """`kennel rpc-worker --env production` logged nothing (no lineage, feedback or monitoring
    of RPC traffic) and kept the version it started with after a release or rollback."""
    import hashlib
    import subprocess
    import sys
    import time

    from kennel.db.predictions import PredictionStore

    project = served_project(tmp_path, models=2)
    ws = Workspace(project)
    ws.registry.set_alias("pets", "production", 1, actor="test", reason="release")
    queue = f"kennel.test.{uuid.uuid4().hex[:8]}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "kennel.cli", "rpc-worker", "--env", "production", "--queue",
         queue, "--url", rabbitmq, "-C", str(project.root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    client = None
    try:
        assert worker.stdout is not None
        said = worker.stdout.readline()
        assert said.startswith(f"serving pets@1 (following production) on {queue}"), said
        client = RpcClient(rabbitmq, queue)
        image = jpeg(70, 50, seed=3)
        answer = client.predict(image)
        assert answer["model"] == {"name": "pets", "version": 1}
        logged = None
        deadline = time.monotonic() + 10
        while logged is None and time.monotonic() < deadline:
            logged = PredictionStore(ws.db).get(answer["prediction_id"])
            time.sleep(0.1)
        assert logged is not None, "the RPC answer never reached the prediction log"
        assert (logged.environment, logged.source) == ("production", f"rpc:{queue}")
        assert logged.input_sha256 == hashlib.sha256(image).hexdigest()
        assert client.predict(b"not an image")["error"] == "invalid_image"
        ws.registry.set_alias("pets", "production", 2, actor="test", reason="release")
        deadline = time.monotonic() + 15
        while client.predict(image)["model"]["version"] != 2:  # the alias is followed
            assert time.monotonic() < deadline, "the worker kept serving version 1"
            time.sleep(0.1)
    finally:
        if client is not None:
            client.channel.queue_delete(queue)
            client.close()
        worker.terminate()  # SIGTERM, as a supervisor stops it
        _out, err = worker.communicate(timeout=20)
        ws.close()
    assert worker.returncode == 0, err
