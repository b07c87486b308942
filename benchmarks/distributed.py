"""What going distributed costs on one machine: ingest of the same source on the local engine and
on Ray, side by side in one run (issue 16's benchmarks; not a test).

    .venv/bin/python benchmarks/distributed.py [--source ../shared/datasets/dogs-vs-cats-10k.zip]

Prints JSON. Each engine ingests into a fresh project (its own database and artifact store):
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
import tempfile
import time
from pathlib import Path
from typing import Any

from kennel.config import init_project
from kennel.ingest.run import IngestReport
from kennel.wiring import Workspace

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
MB = 2**20


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", default=str(SHARED / "dogs-vs-cats-10k.zip"))
    parser.add_argument("--nodes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    work = Path(tempfile.mkdtemp(prefix="kennel-dist-"))
    try:
        local = _ingest(work, "local", args.source)

        from ray.cluster_utils import Cluster

        began = time.perf_counter()
        head = {"num_cpus": 0, "object_store_memory": 128 * MB, "include_dashboard": False}
        cluster = Cluster(initialize_head=True, head_node_args=head)
        try:
            for _ in range(args.nodes):
                cluster.add_node(num_cpus=1, object_store_memory=128 * MB)
            cluster.wait_for_nodes()
            cluster_start_s = time.perf_counter() - began
            on_cluster = _ingest(
                work, "cluster", args.source, engine="ray", address=cluster.address
            )
        finally:
            cluster.shutdown()
        fresh = _ingest(work, "fresh", args.source, engine="ray")
        # once more at the end: on a shared machine the load drifts during a run
        local_again = _ingest(work, "local-again", args.source)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    versions = {r.version.id for r in (local, on_cluster, fresh, local_again)}
    best_local = max(local, local_again, key=lambda r: r.images_per_second)
    result = {
        "benchmark": "distributed",
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "ingest": {
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
        },
    }
    print(json.dumps(result, indent=2))
    if len(versions) != 1:
        raise SystemExit("the engines disagree on the version")


if __name__ == "__main__":
    main()
