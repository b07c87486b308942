"""HTTP service versus the in-process Predictor on the same JPEGs: requests/s and p50/p99 at
concurrency 1, 8 and 32, with micro-batching on and off (goal: service >= 0.7x in-process).

    .venv/bin/python benchmarks/serving.py [--requests 600] [--arch small_cnn --size 96]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from kennel.config import init_project
from kennel.datasets.synth import generate
from kennel.pipeline.build import BuildOptions
from kennel.serve.server import start_in_thread
from kennel.wiring import Workspace


def _stats(latencies: list[float], seconds: float) -> dict[str, float]:
    return {
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
    }


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
                service = ws.service("production")
                service.settings.max_batch = 32 if batching else 1
                service.settings.max_wait_ms = 4.0 if batching else 0.0
                running = start_in_thread(service)
                lat = []
                try:
                    with httpx.Client(
                        base_url=running.url,
                        timeout=60,
                        limits=httpx.Limits(max_connections=concurrency),
                    ) as client:

                        def remote(i: int, out: list[float], client: httpx.Client) -> None:
                            t0 = time.perf_counter()
                            r = client.post(
                                "/v1/predict",
                                content=images[i % len(images)],
                                headers={"content-type": "image/jpeg"},
                            )
                            assert r.status_code == 200
                            out.append((time.perf_counter() - t0) * 1000)

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
                    running.stop()
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
