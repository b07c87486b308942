"""Several services share one journal folder (replicas of one project on a host): a log that
starts while another drains is never taken for a dead owner."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from kennel.db.schema import PredictionRow
from kennel.serve import predlog
from kennel.serve.predlog import PredictionLog, row_of
from kennel.serve.runtime import Prediction
from kennel.wiring import Workspace


def _row() -> dict[str, Any]:
    p = Prediction(
        id=uuid.uuid4().hex,
        label="cat",
        confidence=0.9,
        probabilities={"cat": 0.9, "dog": 0.1},
        model="pets",
        version=1,
        latency_ms=1.0,
        quality={"brightness": 0.5},
        embedding=np.zeros(4, dtype=np.float32),
    )
    return row_of(p, environment="production", source="test", input_sha256=None)


def test_a_starting_log_is_not_adopted_by_a_draining_neighbour(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool" / "production.jsonl"
    neighbour = PredictionLog(workspace.db, spool, flush_s=3600)
    neighbour.start()
    starting = PredictionLog(workspace.db, spool, flush_s=3600)
    real_flock = predlog.fcntl.flock

    def drain_first(fd: int, operation: int) -> None:
        # the worst interleaving: the neighbour's drain runs between the starting log's
        # creating its lock file and locking it
        if operation == predlog.fcntl.LOCK_EX:
            monkeypatch.setattr(predlog.fcntl, "flock", real_flock)
            neighbour._drain_once()
        real_flock(fd, operation)

    monkeypatch.setattr(predlog.fcntl, "flock", drain_first)
    starting.start()
    first, second = _row(), _row()
    starting.add(first).result(10)
    neighbour._drain_once()  # the starting log is alive: its open segment is not touched
    starting.add(second).result(10)
    starting.stop()
    neighbour.stop()
    with workspace.db.session() as s:
        logged = set(s.scalars(select(PredictionRow.id)))
    assert {first["id"], second["id"]} <= logged
    assert sorted(p.name for p in spool.with_suffix("").iterdir()) == []
