"""kill -9 of a loaded `kennel serve`: every prediction it answered 200 is in the prediction log
once it has restarted (the README's promise: none is lost)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from kennel.config import Project
from kennel.db.schema import PredictionRow
from kennel.wiring import Workspace
from tests.helpers import jpeg
from tests.serving import served_project, wait_until


def _serve(project: Project) -> subprocess.Popen[bytes]:
    command = ["serve", "--env", "production", "--drain", "0", "-C", str(project.root)]
    return subprocess.Popen(
        [sys.executable, "-m", "kennel.cli", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_ready(url: str) -> None:
    def ready() -> bool:
        try:
            return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=60)


def _logged(project: Project, ids: set[str]) -> set[str]:
    ws = Workspace(project)
    try:
        with ws.db.session() as s:
            return set(s.scalars(select(PredictionRow.id).where(PredictionRow.id.in_(ids))))
    finally:
        ws.close()


@pytest.mark.parametrize("log_sync", [True, False], ids=["fsync", "written"])
def test_kill_9_under_load_loses_no_answered_prediction(tmp_path: Path, log_sync: bool) -> None:
    # a long flush interval: before the fix, every record since the last flush died with it;
    # a record only written (serve.log_sync: false) is the OS's once written: kill -9 of the
    # service cannot take it back either
    serve = {"log_flush_s": 1.0, "log_sync": log_sync}
    project = served_project(tmp_path, models=1, serve=serve)
    ws = Workspace(project)
    ws.registry.set_alias("pets", "production", 1, actor="test", reason="crash test")
    ws.close()
    url = project.config.environments["production"].url
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    images = [jpeg(64, 64, seed=i) for i in range(16)]

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as c:
            i = k
            while not stop.is_set():
                try:
                    r = c.post(
                        "/v1/predict",
                        content=images[i % len(images)],
                        headers={"content-type": "image/jpeg"},
                    )
                except httpx.HTTPError:
                    return  # the server died under us: this request was never answered
                if r.status_code == 200:
                    with lock:
                        answered.append(r.json()["prediction_id"])
                i += 1

    proc = _serve(project)
    try:
        _wait_ready(url)
        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        # kill once the service has answered plenty (however fast this machine is), while
        # the six clients keep requests in flight
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with lock:
                if len(answered) > 60:
                    break
            time.sleep(0.05)
        proc.kill()  # SIGKILL mid-load: no drain, no flush, no atexit
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(15)
    finally:
        if proc.poll() is None:
            proc.kill()
    ids = set(answered)
    assert len(ids) > 50, len(ids)  # it really was under load

    restarted = _serve(project)  # recovers the dead process's journal into the log
    try:
        _wait_ready(url)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _logged(project, ids) != ids:
            time.sleep(0.2)
        missing = ids - _logged(project, ids)
    finally:
        restarted.terminate()
        restarted.wait(30)
    assert missing == set(), f"{len(missing)} of {len(ids)} answered predictions were lost"
