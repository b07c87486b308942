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
    worker = RpcWorker(predictor, url=rabbitmq, queue=queue)
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
    finally:
        client.channel.queue_delete(queue)
        client.close()
        worker.stop()
        thread.join(10)
    assert worker.handled == 6
