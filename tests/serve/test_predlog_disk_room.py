"""Kept input images stop at ``serve.inputs_min_free_mb``: below that much free disk where the
journal or the local content store is, each record keeps its input's sha256 but not the bytes
(the prediction itself is always logged), the service's metrics count them, and images are kept
again once there is room. A client can no longer fill the service's disk with distinct
images."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db.schema import PredictionRow
from kennel.serve.diskroom import DiskRoom
from kennel.serve.predlog import PredictionLog, row_of
from kennel.serve.runtime import Prediction
from kennel.serve.server import RunningServer
from kennel.wiring import Workspace
from tests.helpers import jpeg
from tests.serving import served_project, serving_production


def _row(image: bytes) -> dict[str, object]:
    p = Prediction(id=uuid.uuid4().hex, label="dog", confidence=0.9,
                   probabilities={"cat": 0.1, "dog": 0.9}, model="pets", version=1,
                   latency_ms=1.0, quality={}, embedding=np.zeros(4, np.float32))  # fmt: skip
    digest = hashlib.sha256(image).hexdigest()
    return row_of(p, environment="e", source="s", input_sha256=digest, data=image)


def test_inputs_are_kept_only_while_there_is_room(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = {"bytes": 10 * 2**30}

    class Stat:  # what os.statvfs says of every path: the free bytes above
        def __init__(self, _path: object) -> None:
            self.f_bavail, self.f_frsize = free["bytes"] // 4096, 4096

    monkeypatch.setattr(os, "statvfs", Stat)
    log = PredictionLog(workspace.db, tmp_path / "spool" / "e.jsonl", flush_s=0.05,
                        inputs=workspace.content, min_free=2**30)  # fmt: skip
    log.room.every_s = 0  # look at the disk on every append
    log.start()
    try:
        images = [jpeg(seed=s) for s in range(3)]
        log.add(_row(images[0])).result(10)
        free["bytes"] = 2**29  # half a GiB left
        log.add(_row(images[1])).result(10)
        free["bytes"] = 2**31
        log.add(_row(images[2])).result(10)
        assert log.flush(10)
    finally:
        log.stop()
    kept = [workspace.content.exists(hashlib.sha256(i).hexdigest()) for i in images]
    assert kept == [True, False, True] and log.room.dropped == 1
    with workspace.db.session() as s:
        digests = set(s.scalars(select(PredictionRow.input_sha256)))
    assert digests == {hashlib.sha256(i).hexdigest() for i in images}  # all three logged


def test_a_floor_of_zero_always_keeps_and_an_unreadable_path_does_not_stop_keeping(
    tmp_path: Path,
) -> None:
    assert DiskRoom([tmp_path], 0).ok()
    assert DiskRoom([tmp_path / "not-made-yet"], 2**62).ok()  # nothing to tell yet
    assert not DiskRoom([tmp_path], 2**62).ok()  # no disk has 4 EiB free


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # 2 PiB free: never, so no input is kept
    project = served_project(tmp_path_factory.mktemp("room"), models=1, poll_s=3600,
                             serve={"inputs_min_free_mb": 2**31, "log_flush_s": 0.05})  # fmt: skip
    with serving_production(project) as (running, _ws):
        yield running


def test_the_service_answers_logs_and_counts_what_it_did_not_keep(server: RunningServer) -> None:
    assert server.service is not None and server.service.predlog is not None
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for seed in (11, 12):
            answer = client.post("/v1/predict", content=jpeg(seed=seed),
                                 headers={"content-type": "image/jpeg"})  # fmt: skip
            assert answer.status_code == 200, answer.text
        metrics = client.get("/metrics").text
        assert client.get("/metrics").text.count("inputs_not_kept_total 2.0") == 1  # not 4
    assert re.search(r"^kennel_predlog_inputs_not_kept_total 2\.0$", metrics, re.M), metrics
    assert server.service.predlog.flush(10)
    store = server.service.predlog.inputs
    assert store is not None
    assert not any(store.exists(hashlib.sha256(jpeg(seed=s)).hexdigest()) for s in (11, 12))
    root = server.service.predlog.folder.parents[2]  # PROJECT/.kennel/spool/production
    which = answer.json()["prediction_id"]
    asked = CliRunner().invoke(app, ["analyze", "saliency", which, "-C", str(root)])
    assert asked.exit_code == 3, asked.output
    assert "short of serve.inputs_min_free_mb" in asked.stderr
