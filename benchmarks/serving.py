"""HTTP service (a separate `kennel serve` process) versus the in-process Predictor on the
same JPEGs: requests/s and p50/p99 at concurrency 1, 8 and 32, with micro-batching on and off
(goal: service >= 0.7x in-process).

    .venv/bin/python benchmarks/serving.py [--requests 600] [--rounds 3]
        [--arch small_cnn --size 96]

Each setting alternates in-process and service rounds and reports the median round's ratio.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import yaml

from kennel.config import init_project
from kennel.datasets.synth import generate
from kennel.pipeline.build import BuildOptions
from kennel.serve.server import free_port
from kennel.wiring import Workspace


def _stats(latencies: list[float], seconds: float) -> dict[str, float]:
    return {
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
    }


def _configure(root: Path, batching: bool) -> None:
    path = root / "kennel.yaml"
    config = yaml.safe_load(path.read_text())
    config["serve"] = {
        **config.get("serve", {}),
        "max_batch": 32 if batching else 1,
        "max_wait_ms": 4.0 if batching else 0.0,
    }
    path.write_text(yaml.safe_dump(config))


def _wait_ready(url: str, timeout: float = 60.0, path: str = "/health/ready") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


def _load(
    port: int,
    images: list[bytes],
    concurrency: int,
    requests: int,
    *,
    path: str = "/v1/predict",
    content_type: str = "image/jpeg",
) -> dict[str, float]:
    """POST the JPEGs (or any bodies) from ``concurrency`` threads, one keep-alive connection
    each.

    The load generator must not be what is measured: httpx costs about 2 ms of CPU per request
    on this 2-core machine, the standard library's http.client a quarter of that."""
    local = threading.local()
    connections: list[http.client.HTTPConnection] = []

    def post(i: int, out: list[float]) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port)
            conn.connect()
            assert conn.sock is not None  # no Nagle: headers and body go out at once
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connections.append(conn)
        t0 = time.perf_counter()
        conn.request(
            "POST", path, body=images[i % len(images)],
            headers={"content-type": content_type},
        )  # fmt: skip
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 200, answer.status
        out.append((time.perf_counter() - t0) * 1000)

    lat: list[float] = []
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(post, range(concurrency), [[]] * concurrency))  # connect, warm up
            began = time.perf_counter()
            list(pool.map(post, range(requests), [lat] * requests))
            seconds = time.perf_counter() - began
    finally:
        for conn in connections:
            conn.close()
    return _stats(lat, seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per setting")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kennel-serving-"))
    generate(work / "lake", 200, seed=1)
    project, _ = init_project(work / "p")
    # a one-epoch model measures the serving path, not quality: the majority-class gate (which
    # a service enforces) is off for it
    config = yaml.safe_load((project.root / "kennel.yaml").read_text())
    config["gates"]["beat_majority"] = False
    (project.root / "kennel.yaml").write_text(yaml.safe_dump(config))
    ws = Workspace.load(project.root)
    results = []
    try:
        ws.ingestor().run(ws.source(str(work / "lake")), "park")
        ws.builder().build(
            "park", BuildOptions(arch=args.arch, image_size=args.size, epochs=1, trials=1)
        )
        ws.registry.set_alias("pets", "production", 1, actor="bench", reason="bench")
        images = [
            ws.content.get(r.sha256) for r in ws.catalog.rows(ws.catalog.resolve("park"))[:64]
        ]
        predictor = ws.predictor("pets@1")
        for data in images:  # warm up
            predictor.predict_one(data)
        for concurrency in (1, 8, 32):

            def in_process(concurrency: int = concurrency) -> dict[str, float]:
                lat: list[float] = []

                def call(i: int) -> None:
                    t0 = time.perf_counter()
                    predictor.predict_one(images[i % len(images)])
                    lat.append((time.perf_counter() - t0) * 1000)

                began = time.perf_counter()
                with ThreadPoolExecutor(concurrency) as pool:
                    list(pool.map(call, range(args.requests)))
                return _stats(lat, time.perf_counter() - began)

            for batching in (True, False):
                # the service runs as its own `kennel serve` process, as in production
                _configure(project.root, batching)
                port = free_port()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "kennel.cli", "serve", "--env", "production",
                     "--port", str(port), "--drain", "0", "-C", str(project.root)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
                rounds = []
                try:
                    _wait_ready(f"http://127.0.0.1:{port}")
                    # Alternate the two, round by round: this machine's speed drifts by tens
                    # of percent over minutes, and a ratio of runs minutes apart measures that.
                    for _ in range(args.rounds):
                        inproc = in_process()
                        served = _load(port, images, concurrency, args.requests)
                        rounds.append((served, inproc, served["rps"] / inproc["rps"]))
                finally:
                    proc.terminate()
                    proc.wait(30)
                served, inproc, ratio = sorted(rounds, key=lambda r: r[2])[len(rounds) // 2]
                results.append(
                    {
                        "concurrency": concurrency,
                        "batching": batching,
                        "service": served,  # the median round
                        "in_process": inproc,
                        "ratio": round(ratio, 2),
                        "ratios": [round(r[2], 2) for r in rounds],
                    }
                )
    finally:
        ws.close()
    print(
        json.dumps(
            {
                "benchmark": "serving",
                "arch": args.arch,
                "size": args.size,
                "cores": os.cpu_count(),
                "requests": args.requests,
                "rounds": args.rounds,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
