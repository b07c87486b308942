"""HTTP service (a separate `kennel serve` process) versus the in-process Predictor on the
same JPEGs: requests/s and p50/p99 at concurrency 1, 8 and 32, with micro-batching on and off
(goal: service >= 0.7x in-process).

    .venv/bin/python benchmarks/serving.py [--requests 600] [--arch small_cnn --size 96]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
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


def _wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kennel-serving-"))
    generate(work / "lake", 200, seed=1)
    project, _ = init_project(work / "p")
    ws = Workspace(project)
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
        for concurrency in (1, 8, 32):
            lat: list[float] = []

            def local(i: int, out: list[float]) -> None:
                t0 = time.perf_counter()
                predictor.predict_one(images[i % len(images)])
                out.append((time.perf_counter() - t0) * 1000)

            began = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(local, range(args.requests), [lat] * args.requests))
            inproc = _stats(lat, time.perf_counter() - began)
            for batching in (True, False):
                # the service runs as its own `kennel serve` process, as in production
                _configure(project.root, batching)
                port = free_port()
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "kennel.cli",
                        "serve",
                        "--env",
                        "production",
                        "--port",
                        str(port),
                        "--drain",
                        "0",
                        "-C",
                        str(project.root),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                url = f"http://127.0.0.1:{port}"
                lat = []
                try:
                    _wait_ready(url)
                    # TCP_NODELAY: httpx writes headers and body separately; without it Nagle
                    # plus delayed ACKs add ~40 ms to every request on loopback.
                    transport = httpx.HTTPTransport(
                        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                        limits=httpx.Limits(max_connections=concurrency),
                    )
                    with httpx.Client(base_url=url, timeout=60, transport=transport) as client:

                        def remote(i: int, out: list[float], client: httpx.Client) -> None:
                            t0 = time.perf_counter()
                            r = client.post(
                                "/v1/predict",
                                content=images[i % len(images)],
                                headers={"content-type": "image/jpeg"},
                            )
                            assert r.status_code == 200
                            out.append((time.perf_counter() - t0) * 1000)

                        remote(0, [], client)  # warm-up
                        began = time.perf_counter()
                        with ThreadPoolExecutor(concurrency) as pool:
                            list(
                                pool.map(
                                    remote,
                                    range(args.requests),
                                    [lat] * args.requests,
                                    [client] * args.requests,
                                )
                            )
                        http = _stats(lat, time.perf_counter() - began)
                finally:
                    proc.terminate()
                    proc.wait(30)
                results.append(
                    {
                        "concurrency": concurrency,
                        "batching": batching,
                        "service": http,
                        "in_process": inproc,
                        "ratio": round(http["rps"] / inproc["rps"], 2),
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
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
