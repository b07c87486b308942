"""A real local Ray cluster for the engine tests: a head with no CPUs (it only holds the
driver's objects) and two one-CPU worker nodes on this machine (the ``cluster`` fixture of
tests/conftest.py), and the handles the tests kill things with."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import psutil

MB = 2**20
NODE = {"num_cpus": 1, "object_store_memory": 80 * MB}


def start() -> Iterator[Any]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    began = time.perf_counter()
    head = {"num_cpus": 0, "object_store_memory": 80 * MB, "include_dashboard": False}
    ray_cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        for _ in range(2):
            ray_cluster.add_node(**NODE)
        ray_cluster.wait_for_nodes()
        print(f"ray cluster up in {time.perf_counter() - began:.1f}s")
        yield ray_cluster
    finally:
        ray_cluster.shutdown()


def workers(ray_cluster: Any) -> list[Any]:
    return [n for n in ray_cluster.list_all_nodes() if not n.head]


def running(node: Any, task: str) -> list[psutil.Process]:
    """The worker processes of ``node`` executing a task named ``task`` now (Ray shows a
    task's name as its worker's process title)."""
    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    busy = []
    for proc in raylet.children():
        try:
            if task in proc.name() or task in " ".join(proc.cmdline()):
                busy.append(proc)
        except psutil.NoSuchProcess:
            pass
    return busy
