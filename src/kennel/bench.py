"""``kennel bench patterns``: the four deployment architectures on one bundle, side by side.

Every pattern serves the model an environment's alias names, on the same images:

1. embedded: the wheel from ``kennel export package``, imported and called in-process;
2. dedicated API: the production REST service over HTTP, and the RabbitMQ RPC worker;
3. model as data: a consumer that received the signed bundle over a Redis Stream and scores
   in-process (plus how long the bundle took to arrive and load);
4. offline: ``batch-score`` into a shared SQL table, then the example reader's lookups.

Servers run in this process on loopback, in threads, so client and server share the two
cores and one interpreter: absolute numbers are pessimistic for the networked patterns,
the comparison is like for like.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from kennel.errors import ServiceError
from kennel.package.wheel import build_wheel, package_name
from kennel.progress import Event, Progress, silent
from kennel.serve.server import start_in_thread
from kennel.stream import batch, rpc, signing
from kennel.stream.feed import RedisFeed, message
from kennel.stream.subscriber import ModelSubscriber
from kennel.wiring import Workspace


@dataclass(frozen=True)
class PatternResult:
    pattern: str
    transport: str
    p50_ms: float
    p99_ms: float
    throughput: float  # images per second
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "transport": self.transport,
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "images_per_second": round(self.throughput, 1),
            "note": self.note,
        }


def _timed(call: Callable[[bytes], object], images: list[bytes]) -> tuple[list[float], float]:
    """Per-call latencies (ms) one at a time, and the wall time of the whole run."""
    latencies = []
    began = time.perf_counter()
    for image in images:
        t = time.perf_counter()
        call(image)
        latencies.append((time.perf_counter() - t) * 1000)
    return latencies, time.perf_counter() - began


def _concurrent(call: Callable[[bytes], object], images: list[bytes], workers: int) -> float:
    began = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(call, images))
    return len(images) / (time.perf_counter() - began)


def _result(
    pattern: str, transport: str, latencies: list[float], throughput: float, note: str = ""
) -> PatternResult:
    lat = np.array(latencies)
    return PatternResult(
        pattern,
        transport,
        float(np.percentile(lat, 50)),
        float(np.percentile(lat, 99)),
        throughput,
        note,
    )


def run_patterns(
    ws: Workspace,
    images: list[tuple[str, bytes]],
    *,
    env: str = "production",
    concurrency: int = 8,
    amqp_url: str = rpc.DEFAULT_URL,
    redis_url: str = "redis://127.0.0.1:6379/0",
    db_url: str | None = None,
    progress: Progress = silent,
) -> list[PatternResult]:
    config = ws.project.config
    ref = f"{config.model.name}@{config.environment(env).alias}"
    model = ws.registry.resolve(ref)
    files = {name: ws.registry.read_file(model, name) for name in model.files}
    data = [d for _, d in images]
    results: list[PatternResult] = []
    with tempfile.TemporaryDirectory(prefix="kennel-bench-") as tmp:
        progress(Event("patterns", "pattern 1: embedded wheel"))
        results.append(_embedded(files, model.name, model.version, Path(tmp), data, concurrency))
        progress(Event("patterns", "pattern 2: REST service"))
        results.append(_rest(ws, env, data, concurrency))
        progress(Event("patterns", "pattern 2: RabbitMQ RPC"))
        results.append(_rpc(ws, ref, data, amqp_url))
        progress(Event("patterns", "pattern 3: model as data on a Redis Stream"))
        results.append(_feed(ws, files, model.name, model.version, data, redis_url, Path(tmp)))
        progress(Event("patterns", "pattern 4: offline batch into a shared table"))
        results.append(_batch(ws, ref, images, db_url or f"sqlite:///{Path(tmp) / 'shared.db'}"))
    return results


def _embedded(
    files: dict[str, bytes], name: str, version: int, tmp: Path, data: list[bytes], workers: int
) -> PatternResult:
    wheel = build_wheel(files, {"name": name, "version": version}, tmp / "dist")
    site = tmp / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    sys.path.insert(0, str(site))
    try:
        package = importlib.import_module(package_name(name))
        package.predict(data[0])  # load outside the timing
        latencies, _ = _timed(package.predict, data)
        throughput = _concurrent(package.predict, data, workers)
    finally:
        sys.path.remove(str(site))
        sys.modules.pop(package_name(name), None)
    return _result("1 embedded", "in-process call (wheel)", latencies, throughput)


def _rest(ws: Workspace, env: str, data: list[bytes], workers: int) -> PatternResult:
    running = start_in_thread(ws.service(env))
    local = threading.local()
    clients: list[httpx.Client] = []

    def call(image: bytes) -> object:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=running.url, timeout=30)
            clients.append(client)
        answer = client.post("/v1/predict", content=image)
        answer.raise_for_status()
        return answer

    try:
        call(data[0])
        latencies, _ = _timed(call, data)
        throughput = _concurrent(call, data, workers)
    finally:
        for client in clients:
            client.close()
        running.stop()
    return _result("2 dedicated API", "REST over HTTP", latencies, throughput, "micro-batched")


def _rpc(ws: Workspace, ref: str, data: list[bytes], url: str) -> PatternResult:
    queue = f"kennel.bench.{uuid.uuid4().hex[:8]}"
    worker = rpc.RpcWorker(ws.predictor(ref), url=url, queue=queue)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    if not worker.wait_ready():
        raise ServiceError(f"RabbitMQ RPC worker did not start at {url}")
    client = rpc.RpcClient(url, queue)
    try:
        client.predict(data[0])
        latencies, wall = _timed(client.predict, data)
    finally:
        client.channel.queue_delete(queue)
        client.close()
        worker.stop()
        thread.join(10)
    return _result(
        "2 dedicated API", "RabbitMQ RPC", latencies, len(data) / wall, "one request at a time"
    )


def _feed(
    ws: Workspace,
    files: dict[str, bytes],
    name: str,
    version: int,
    data: list[bytes],
    url: str,
    tmp: Path,
) -> PatternResult:
    stream = f"kennel:bench:{uuid.uuid4().hex[:8]}"
    feed = RedisFeed(url, stream)
    key = signing.load_or_create(tmp / "keys")
    subscriber = ModelSubscriber(feed, key.public_key(), name=name, block_ms=50)
    try:
        subscriber.start()
        began = time.perf_counter()
        feed.publish(message(files, name=name, version=version, alias="bench", key=key))
        while subscriber.current is None and time.perf_counter() - began < 60:
            time.sleep(0.005)
        if subscriber.current is None:
            raise ServiceError("the model never arrived on the feed")
        arrival_ms = (time.perf_counter() - began) * 1000
        predictor = subscriber.current
        latencies, wall = _timed(predictor.predict_one, data)
    finally:
        subscriber.stop()
        feed.client.delete(stream)
        feed.close()
    return _result(
        "3 model as data",
        "Redis Stream, then in-process",
        latencies,
        len(data) / wall,
        f"bundle published to loaded in {arrival_ms:.0f} ms",
    )


def _batch(ws: Workspace, ref: str, images: list[tuple[str, bytes]], db_url: str) -> PatternResult:
    table = f"bench_{uuid.uuid4().hex[:8]}"
    report = batch.score(ws.predictor(ref), iter(images), db_url=db_url, table=table)
    uris = [uri for uri, _ in images]
    latencies, _ = _timed(
        lambda u: batch.read(db_url, table, u.decode()), [u.encode() for u in uris]
    )
    return _result(
        "4 offline batch",
        f"shared table ({db_url.split(':')[0]})",
        latencies,
        report.images_per_second,
        "latency = a reader's lookup; throughput = the scoring job",
    )


def test_images(ws: Workspace, env: str, count: int) -> list[tuple[str, bytes]]:
    """Up to ``count`` test-split images of the dataset version the served model learnt from."""
    config = ws.project.config
    model = ws.registry.resolve(f"{config.model.name}@{config.environment(env).alias}")
    version = ws.catalog.resolve(f"{model.dataset}@{model.dataset_version}")
    rows = [r for r in ws.catalog.rows(version) if r.split == "test"][:count]
    return [(r.uri, ws.content.get(r.sha256)) for r in rows]
