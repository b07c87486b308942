"""What going distributed costs on one machine: each distributed path against its local path,
side by side in one run (issue 16's benchmarks; not a test).

    .venv/bin/python benchmarks/distributed.py [--source ../shared/datasets/dogs-vs-cats-10k.zip]
        [--parts ingest,score,train,tune]

Prints JSON. ``tune``: trials per minute of a search in one process (the local path) against
one shared PostgreSQL study worked by 1 and by 2 ``kennel tune worker`` processes (the cores
split between them; ``benchmarks/tune_workers.py`` alone measures the same).

``score``: ``kennel batch-score`` of ``--score-images`` photos of the source by a small CNN,
in this process (the local path) and as Ray tasks on a running cluster of one one-CPU node per
core; both must store the same rows. ``train``: training images/s of the same small CNN run in
one process (all cores) and data-parallel under torchrun (``kennel train --nproc N``, one core
each), the epochs after the first (start-up excluded) averaged.

``ingest``: each engine ingests into a fresh project (its own database and artifact store):
- ``local``: the process pool (all cores), as ``kennel data ingest`` runs by default;
- ``ray_cluster``: a running Ray cluster of a head (no CPUs) and one one-CPU worker node per
  core on this machine, started before the clock (as a real cluster would be); the time counts
  connecting to it, shipping every chunk to the workers and getting the results back;
- ``ray_new_instance``: ``--engine ray`` with no address, which starts Ray on this machine for
  the one ingest (the start-up is in the time).
The local engine runs first and again last, so drifting load on a shared machine shows. All
must give the same version id; ``throughput_vs_local`` compares with the faster local run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import yaml

import tune_workers
from kennel.config import init_project
from kennel.ingest.run import IngestReport
from kennel.wiring import Workspace

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
MB = 2**20
TRAIN = {"arch": "small_cnn", "image_size": 64, "batch_size": 32, "patience": 10}
TRAIN |= {"search": {"trials": 1}}


def _ingest(work: Path, name: str, source: str, **engine: Any) -> IngestReport:
    project, _ = init_project(work / name)
    ws = Workspace(project)
    try:
        return ws.ingestor(**engine).run(ws.source(source), "bench")
    finally:
        ws.close()


def _figures(report: IngestReport, baseline: IngestReport | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seconds": round(report.seconds, 2),
        "images_per_s": round(report.images_per_second, 1),
        "version": report.version.id,
    }
    if baseline is not None:
        out["throughput_vs_local"] = round(report.images_per_second / baseline.images_per_second, 3)
    return out


def _cluster(nodes: int) -> tuple[Any, float]:
    from ray.cluster_utils import Cluster

    began = time.perf_counter()
    head = {"num_cpus": 0, "object_store_memory": 128 * MB, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    for _ in range(nodes):
        cluster.add_node(num_cpus=1, object_store_memory=128 * MB)
    cluster.wait_for_nodes()
    return cluster, time.perf_counter() - began


def ingest_part(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    local = _ingest(work, "local", args.source)
    cluster, cluster_start_s = _cluster(args.nodes)
    try:
        on_cluster = _ingest(work, "cluster", args.source, engine="ray", address=cluster.address)
    finally:
        cluster.shutdown()
    fresh = _ingest(work, "fresh", args.source, engine="ray")
    # once more at the end: on a shared machine the load drifts during a run
    local_again = _ingest(work, "local-again", args.source)
    versions = {r.version.id for r in (local, on_cluster, fresh, local_again)}
    best_local = max(local, local_again, key=lambda r: r.images_per_second)
    if len(versions) != 1:
        raise SystemExit("the engines disagree on the version")
    return {
        "source": Path(args.source).name,
        "images": local.files,
        "local": _figures(local),
        "local_again_at_the_end": _figures(local_again),
        "ray_cluster": {
            "nodes": f"{args.nodes} x 1 CPU (+ head, 0 CPUs)",
            "cluster_start_s": round(cluster_start_s, 1),
            **_figures(on_cluster, best_local),
        },
        "ray_new_instance": _figures(fresh, best_local),
        "same_version": len(versions) == 1,
    }


def _trained(work: Path, name: str) -> Workspace:
    """A project with a one-epoch small CNN (pets@1) on 240 simulator images."""
    from kennel.datasets.synth import generate
    from kennel.pipeline.build import BuildOptions

    lake = work / "lake"
    if not lake.exists():
        generate(lake, 240, seed=1)
    project, _ = init_project(work / name)
    config = yaml.safe_load((project.root / "kennel.yaml").read_text())
    config["train"].update(TRAIN)
    (project.root / "kennel.yaml").write_text(yaml.safe_dump(config))
    project, _ = init_project(work / name)
    ws = Workspace(project)
    ws.ingestor().run(ws.source(str(lake)), "park")
    if name == "score":
        ws.builder().build("park", BuildOptions(trials=1, epochs=1))
    return ws


def score_part(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from kennel.stream.batch import score

    with zipfile.ZipFile(args.source) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[: args.score_images]
        items: list[tuple[str, bytes | str]] = [(n, archive.read(n)) for n in names]
    ws = _trained(work, "score")
    try:
        predictor = ws.predictor("pets@1")
        db = f"sqlite:///{work / 'scores.db'}"
        local = score(predictor, items, db_url=db, table="local")
        cluster, cluster_start_s = _cluster(args.nodes)
        try:
            scorer = ws.scorer(predictor, engine="ray", address=cluster.address)
            on_cluster = score(predictor, items, db_url=db, table="ray", scorer=scorer)
        finally:
            cluster.shutdown()
        local_again = score(predictor, items, db_url=db, table="local_again")
    finally:
        ws.close()
    best = max(local.images_per_second, local_again.images_per_second)

    def figures(report: Any) -> dict[str, float]:
        return {
            "seconds": round(report.seconds, 2),
            "images_per_s": round(report.images_per_second, 1),
        }

    return {
        "images": len(items),
        "local": figures(local),
        "local_again_at_the_end": figures(local_again),
        "ray_cluster": {
            "nodes": f"{args.nodes} x 1 CPU (+ head, 0 CPUs)",
            "cluster_start_s": round(cluster_start_s, 1),
            "seconds": round(on_cluster.seconds, 2),
            "images_per_s": round(on_cluster.images_per_second, 1),
            "throughput_vs_local": round(on_cluster.images_per_second / best, 3),
        },
        "same_rows": on_cluster.inserted == local.inserted == len(items),
    }


def train_part(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    ws = _trained(work, "train")
    root = ws.project.root
    ws.close()
    out: dict[str, Any] = {"model": "small_cnn 64 px, batch 32, 240 simulator images"}
    ranks = f"torchrun_{args.nodes}_x_{max(1, (os.cpu_count() or 1) // args.nodes)}_threads"
    for name, extra, threads in (
        ("one_process_all_cores", [], 0),
        ("one_process_1_thread", [], 1),
        (ranks, ["--nproc", str(args.nodes)], 0),
    ):
        config = yaml.safe_load((root / "kennel.yaml").read_text())
        config["train"]["threads"] = threads
        (root / "kennel.yaml").write_text(yaml.safe_dump(config))
        command = [sys.executable, "-m", "kennel.cli", "train", "-d", "park", "-C", str(root)]
        began = time.perf_counter()
        done = subprocess.run(
            [*command, "--epochs", "4", "--json", *extra], capture_output=True, text=True
        )
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        history = json.loads(done.stdout)["history"]
        steady = [h["images_per_s"] for h in history[1:]]
        out[name] = {
            "images_per_s": round(sum(steady) / len(steady), 1),
            "wall_s": round(time.perf_counter() - began, 1),
        }
    out["throughput_vs_local"] = round(
        out[ranks]["images_per_s"] / out["one_process_all_cores"]["images_per_s"], 3
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", default=str(SHARED / "dogs-vs-cats-10k.zip"))
    parser.add_argument("--nodes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--parts", default="ingest,score,train,tune")
    parser.add_argument("--trials", type=int, default=8, help="tune: trials per path")
    parser.add_argument("--tune-images", type=int, default=240, help="tune: simulator images")
    parser.add_argument("--score-images", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    parts = {
        "ingest": ingest_part,
        "score": score_part,
        "train": train_part,
        "tune": lambda _work, a: tune_workers.measure(a.trials, a.tune_images),
    }
    result: dict[str, Any] = {
        "benchmark": "distributed",
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
    }
    for part in args.parts.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"kennel-dist-{part}-"))
        try:
            result[part] = parts[part](work, args)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
