"""Batch scoring on Ray (the local two-worker cluster of tests/raycluster.py): the same inputs
give the same rows in the shared table as the local path, a worker killed mid-task loses and
duplicates no chunk, and a cluster that cannot be reached is one line with nothing written."""

from __future__ import annotations

import io
import json
import signal
import socket
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import inspect, select
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import Project
from kennel.db.scores import ScoreTable
from kennel.ingest.ray_engine import RayEngine
from kennel.progress import Event
from kennel.stream.batch import Item, score
from kennel.stream.ray_scoring import RayScorer
from kennel.wiring import Workspace
from tests.raycluster import running, workers
from tests.serving import served_project

TASK = "kennel-batch-score"
runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return served_project(tmp_path_factory.mktemp("batch-ray"), models=1)


def _big(seed: int) -> bytes:
    """A camera-sized frame: long enough to decode that a task is caught running."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(small).resize((1600, 1200), Image.BILINEAR).save(out, "JPEG", quality=85)
    return out.getvalue()


def _inputs(shared_data: Path) -> list[Item]:
    items: list[Item] = []
    with zipfile.ZipFile(shared_data / "dogs-vs-cats-mini.zip") as archive:
        for name in sorted(archive.namelist())[:120]:
            if name.endswith(".jpg"):
                items.append((f"mini/{name}", archive.read(name)))
    items += [(f"frames/{i}.jpg", _big(i)) for i in range(24)]
    items += [("bad/not-an-image.jpg", b"not an image"), ("bad/gone.jpg", "could not read")]
    return items


def _rows(url: str, table: str) -> dict[tuple[str, str], Any]:
    with ScoreTable(url, table) as t, t.engine.connect() as connection:
        rows = connection.execute(select(t.table)).all()
    return {(r.uri, r.input_sha256): r for r in rows}


def test_ray_gives_the_local_rows_and_a_killed_worker_loses_nothing(
    cluster: Any, project: Project, shared_data: Path, pg_url: str
) -> None:
    items = _inputs(shared_data)
    ws = Workspace(project)
    predictor = ws.predictor("pets@1")
    ws.close()
    local = score(predictor, items, db_url=pg_url, table="local_scores", chunk=4)

    killed: list[int] = []

    def kill_a_running_task(event: Event) -> None:
        if killed or not event.done:
            return
        for node in workers(cluster):
            if busy := running(node, TASK):
                busy[0].send_signal(signal.SIGKILL)  # a worker process dies mid-chunk
                killed.append(event.done)
                return

    scorer = RayScorer(RayEngine(cluster.address), predictor)
    remote = score(
        predictor,
        items,
        db_url=pg_url,
        table="ray_scores",
        chunk=4,
        scorer=scorer,
        progress=kill_a_running_task,
    )
    assert killed and killed[0] < len(items), killed  # it died with chunks left to score
    print(f"{len(items)} inputs: local {local.seconds:.2f}s, ray {remote.seconds:.2f}s")
    for report in (local, remote):
        assert (report.inputs, report.inserted, report.errors) == (len(items), len(items), 2)
    expected, got = _rows(pg_url, "local_scores"), _rows(pg_url, "ray_scores")
    assert len(got) == len(items) and got.keys() == expected.keys()  # none lost, none twice
    for key, row in got.items():
        want = expected[key]
        assert (row.model, row.version, row.label, row.error) == (
            want.model,
            want.version,
            want.label,
            want.error,
        )
        if want.probabilities is None:
            assert row.probabilities is None
        else:
            assert json.loads(row.probabilities) == pytest.approx(
                json.loads(want.probabilities), abs=1e-5
            )
            assert row.confidence == pytest.approx(want.confidence, abs=1e-5)


def test_cli_scores_on_the_cluster_and_an_unreachable_one_writes_nothing(
    cluster: Any, project: Project, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'scores.db'}"
    root = str(project.root)
    args = ["batch-score", "--input", "dataset:park", "--model", "pets@1", "--db", db]
    args += ["-C", root, "--json", "--engine", "ray"]
    result = runner.invoke(app, [*args, "--table", "pets", "--address", cluster.address])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["inputs"] == report["inserted"] == 120 and report["errors"] == 0

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    result = runner.invoke(app, [*args, "--table", "never", "--address", closed])
    assert result.exit_code == 18, result.output
    assert closed in result.stderr and result.stderr.count("\n") == 1, result.stderr
    with ScoreTable(db, "never") as t:
        assert not inspect(t.engine).has_table("never")  # not even created
    empty = runner.invoke(app, [*args, "--table", "never", "--address", ""])
    assert empty.exit_code == 2 and "--address is empty" in empty.stderr, empty.output
    assert empty.stderr.count("\n") == 1, empty.stderr
    local = runner.invoke(app, [*args[:-2], "--table", "pets", "--address", cluster.address])
    assert local.exit_code == 2 and "--address" in local.stderr


def test_cli_json_stays_json_when_a_worker_dies(
    cluster: Any, project: Project, tmp_path: Path
) -> None:
    """Ray reports a killed worker with a ``(raylet) A worker died ...`` line on the driver's
    stdout; with ``--json`` that line goes to stderr and stdout stays one JSON document."""
    frames = tmp_path / "frames" / "cat"
    frames.mkdir(parents=True)
    for i in range(48):
        (frames / f"{i}.jpg").write_bytes(_big(i))
    killed: list[int] = []
    done = threading.Event()

    def kill_a_running_task() -> None:
        while not done.is_set() and not killed:
            for node in workers(cluster):
                if busy := running(node, TASK):
                    busy[0].send_signal(signal.SIGKILL)  # a worker process dies mid-chunk
                    killed.append(busy[0].pid)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_running_task, daemon=True)
    killer.start()
    args = ["batch-score", "--input", str(tmp_path / "frames"), "--model", "pets@1", "--json"]
    args += ["--db", f"sqlite:///{tmp_path / 'scores.db'}", "--table", "frames"]
    args += ["-C", str(project.root), "--engine", "ray", "--address", cluster.address]
    try:
        result = runner.invoke(app, args)
    finally:
        done.set()
        killer.join()
    assert killed, "no task was caught running"
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # nothing but the report on stdout
    assert report["inputs"] == report["inserted"] == 48 and report["errors"] == 0
    # Ray reports the death asynchronously (usually within the run, not always): wherever the
    # line lands, it is never on stdout
    assert "worker died" not in result.stdout.lower()
