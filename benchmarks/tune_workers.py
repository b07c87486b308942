"""Trials per minute of a hyperparameter search on this machine: in one process (the local path,
an in-memory study), then one shared study worked by 1 and by 2 `kennel tune worker` processes
over PostgreSQL. The cores are split between the workers (``--threads``), so the figure says
what going distributed costs on one machine; on a cluster each machine adds its own cores.

    KENNEL_TEST_PG=postgresql+psycopg://127.0.0.1:5432/test \\
        .venv/bin/python benchmarks/tune_workers.py [--trials 8] [--images 240]

``per_min_wall`` counts from launching the workers to their exit (process start, imports and
the image cache included); ``per_min_trials`` from the first trial's start to the last one's
end, the rate a long study settles at.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, text

from kennel.config import init_project
from kennel.datasets.synth import generate
from kennel.pipeline.steps import prepare
from kennel.progress import silent
from kennel.train.tune import search
from kennel.wiring import Workspace

PG = os.environ.get("KENNEL_TEST_PG", "postgresql+psycopg://127.0.0.1:5432/test")


def _project(root: Path, url: str, lake: Path) -> Workspace:
    init_project(root)
    config = yaml.safe_load((root / "kennel.yaml").read_text())
    config["store"]["metadata_url"] = url
    config["data"]["workers"] = 1
    config["train"].update(arch="small_cnn", image_size=64, epochs=2, batch_size=32)
    config["train"]["search"].update(
        method="random", space={"lr": {"low": 0.001, "high": 0.01, "log": True}}
    )
    (root / "kennel.yaml").write_text(yaml.safe_dump(config))
    ws = Workspace.load(root)
    ws.ingestor().run(ws.source(str(lake)), "bench")
    return ws


def _local(ws: Workspace, trials: int) -> dict[str, float]:
    """The local path: the same trials in this process, study in memory."""
    version = ws.catalog.resolve("bench")
    config = ws.project.config.train.model_copy(update={"threads": 0})
    plan = prepare.plan(version, ws.catalog.rows(version), config, ["cat", "dog"])
    images = prepare.ImageSets(
        plan,
        content=ws.content,
        artifacts_url=ws.project.artifacts_url,
        cache_root=ws.project.state_dir / "cache",
        workers=1,
        progress=silent,
    )
    began = time.perf_counter()
    found = search(
        config,
        images,
        plan.splits.train,
        plan.splits.validation,
        tracker=ws.tracker,
        dataset="bench",
        dataset_version=version.id,
        run_root=ws.project.state_dir / "runs",
        trials=trials,
        budget_minutes=None,
    )
    wall = time.perf_counter() - began
    trial_s = sum(t.seconds for t in found.trials)
    return {
        "per_min_wall": round(trials * 60 / wall, 2),
        "per_min_trials": round(trials * 60 / trial_s, 2),
    }


def _shared(ws: Workspace, study: str, trials: int, workers: int) -> dict[str, float]:
    ws.tuner().start("bench", trials=trials, name=study)
    threads = max(1, (os.cpu_count() or 1) // workers)
    cmd = [sys.executable, "-m", "kennel.cli", "tune", "worker", "--study", study]
    args = [*cmd, "--threads", str(threads), "-C", str(ws.project.root), "--json"]
    began = time.perf_counter()
    procs = [
        subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(workers)
    ]
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - began
    assert codes == [0] * workers, codes
    status = ws.studies.status(study)
    assert status.count("completed", "pruned") == trials, status.as_dict()["counts"]
    first = min(t.started_at for t in status.trials if t.started_at)
    last = max(t.finished_at for t in status.trials if t.finished_at)
    return {
        "workers": workers,
        "threads_per_worker": threads,
        "per_min_wall": round(trials * 60 / wall, 2),
        "per_min_trials": round(trials * 60 / (last - first).total_seconds(), 2),
    }


def measure(trials: int, images: int) -> dict[str, Any]:
    """The three paths on one study's settings, in a scratch schema of ``PG`` dropped after."""
    work = Path(tempfile.mkdtemp(prefix="kennel-tune-"))
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    generate(work / "lake", images, seed=1)
    ws = _project(work / "p", f"{PG}?options=-csearch_path%3D{schema}", work / "lake")
    try:
        local = _local(ws, trials)
        one = _shared(ws, "one", trials, 1)
        two = _shared(ws, "two", trials, 2)
    finally:
        ws.close()
        with admin.begin() as connection:
            for name in (schema, f"{schema}_optuna"):
                connection.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
        admin.dispose()
    return {
        "cores": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "trials": trials,
        "images": images,
        "local_in_process": local,
        "shared_1_worker": one,
        "shared_2_workers": two,
        "speedup_2_vs_1_trials": round(two["per_min_trials"] / one["per_min_trials"], 2),
        "throughput_vs_local": round(two["per_min_trials"] / local["per_min_trials"], 3)
        if local.get("per_min_trials")
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--images", type=int, default=240)
    args = parser.parse_args()
    result = measure(args.trials, args.images)
    print(json.dumps({"benchmark": "tune_workers", **result}, indent=2))


if __name__ == "__main__":
    main()
