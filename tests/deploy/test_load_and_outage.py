"""Load across release/rollback cycles, and a database outage during traffic (PostgreSQL behind
a TCP proxy that the test cuts and restores: the real server, a real network failure)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import func, select

from kennel.db.schema import PredictionRow
from kennel.serve.auth import Identity
from kennel.serve.server import start_in_thread
from kennel.wiring import Workspace
from tests.helpers import jpeg
from tests.serving import served_project, start_env, wait_until


def test_2000_requests_across_release_and_rollback_cycles(tmp_path: Path) -> None:
    project = served_project(tmp_path, poll_s=0.05)
    ws = Workspace(project)
    releases = ws.releases()
    staging = start_env(ws, "staging")
    qa = ws.tokens.identify(ws.tokens.create("qa", "quinn")[0])
    ops = Identity.system("ops")
    try:
        for ref in ("pets@1", "pets@2"):  # certify and approve both versions first
            assert releases.deploy(ref, "staging", who=ops).certification.passed
            releases.decide(ref, "approved", who=qa, note="load test")
    finally:
        staging.stop()
    releases.release("pets@1", "production", who=ops)
    service = ws.service("production")
    swaps: list[tuple[float, int]] = []
    service.holder.on_swap = lambda s: swaps.append((time.monotonic(), s.new))
    running = start_in_thread(service)
    images = [jpeg(64, 64, seed=i) for i in range(20)]
    results: list[tuple[float, float, int, int]] = []
    lock = threading.Lock()
    stop_cycling = threading.Event()

    def cycle() -> None:  # three release/rollback cycles while traffic flows
        for _ in range(3):
            time.sleep(0.15)
            releases.release("pets@2", "production", who=ops, reason="load test")
            time.sleep(0.15)
            releases.rollback("production", who=ops, reason="load test")
        stop_cycling.set()

    def call(client: httpx.Client, i: int) -> None:
        began = time.monotonic()
        response = client.post(
            "/v1/predict", content=images[i % len(images)], headers={"content-type": "image/jpeg"}
        )
        version = response.json()["model"]["version"] if response.status_code == 200 else -1
        with lock:
            results.append((began, time.monotonic(), response.status_code, version))

    try:
        cycler = threading.Thread(target=cycle)
        with httpx.Client(
            base_url=running.url, timeout=30, limits=httpx.Limits(max_connections=16)
        ) as client:
            cycler.start()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: call(client, i), range(2000)))
            cycler.join()
    finally:
        running.stop()
        ws.close()
    assert len(results) == 2000
    assert [r for r in results if r[2] != 200] == []
    assert [v for _t, v in swaps] == [1, 2, 1, 2, 1, 2, 1], swaps  # every move was picked up
    timeline = swaps  # (when the service started serving it, version)

    def live_during(start: float, end: float) -> set[int]:
        at_start = [v for t, v in timeline if t <= start][-1]
        return {at_start} | {v for t, v in timeline if start < t <= end}

    assert all(version in live_during(start, end) for start, end, _s, version in results)
    assert {r[3] for r in results} == {1, 2}


class Proxy:
    """A TCP relay to PostgreSQL that can be cut (all connections reset) and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()

    def cut(self) -> None:
        self.up.clear()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
        self.conns.clear()

    def restore(self) -> None:
        self.up.set()


def test_database_outage_loses_no_prediction(tmp_path: Path, pg_url: str) -> None:
    base, _, options = pg_url.partition("?")
    proxy = Proxy(("127.0.0.1", 5432))
    proxied = f"{base.replace('127.0.0.1:5432', f'127.0.0.1:{proxy.port}')}?{options}"
    project = served_project(tmp_path, metadata_url=proxied, models=1, serve={"log_flush_s": 0.1})
    ws = Workspace(project)
    ws.registry.set_alias("pets", "production", 1, actor="test", reason="start")
    service = ws.service("production")
    running = start_in_thread(service)
    ok_ids: list[str] = []
    try:
        with httpx.Client(base_url=running.url, timeout=30) as client:

            def burst(n: int) -> None:
                for i in range(n):
                    r = client.post(
                        "/v1/predict", content=jpeg(seed=i), headers={"content-type": "image/jpeg"}
                    )
                    assert r.status_code == 200, r.text
                    ok_ids.append(r.json()["prediction_id"])

            burst(20)
            assert service.predlog is not None
            wait_until(lambda: service.predlog is not None and service.predlog.stats.written >= 20)
            proxy.cut()  # the database disappears mid-traffic
            burst(60)
            wait_until(lambda: service.predlog is not None and service.predlog.stats.spooled > 0)
            assert service.predlog.spooled_lines() > 0
            assert client.get("/health/ready").status_code == 200  # still serving
            proxy.restore()
            burst(20)
            assert service.predlog.flush(timeout=30)
    finally:
        running.stop()
    with ws.db.session() as s:
        stored = set(s.scalars(select(PredictionRow.id)))
        count = s.scalar(select(func.count()).select_from(PredictionRow))
    ws.close()
    assert len(ok_ids) == 100 and set(ok_ids) <= stored and count == 100
