"""`kennel serve` as a process (graceful drain) and `kennel predict` in-process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.wiring import Workspace
from tests.helpers import jpeg
from tests.serving import served_project, wait_until


def test_serve_drains_gracefully_and_predict_agrees(tmp_path: Path) -> None:
    project = served_project(tmp_path, models=1)
    ws = Workspace(project)
    ws.registry.set_alias("pets", "production", 1, actor="test", reason="serve test")
    ws.close()
    env = project.config.environments["production"]
    image = tmp_path / "cat.jpg"
    image.write_bytes(jpeg(seed=42))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kennel.cli",
            "serve",
            "--env",
            "production",
            "--drain",
            "1.5",
            "-C",
            str(project.root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=env.url, timeout=10) as client:

            def ready() -> bool:
                try:
                    return client.get("/health/ready").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(ready, timeout=60)
            # the serving process never loads PyTorch: no torch library is mapped into it
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            assert "onnxruntime" in maps and "torch" not in maps
            served = client.post(
                "/v1/predict", content=image.read_bytes(), headers={"content-type": "image/jpeg"}
            ).json()
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert client.get("/health/ready").status_code == 503  # readiness turns first
            during = client.post(
                "/v1/predict", content=image.read_bytes(), headers={"content-type": "image/jpeg"}
            )
            assert during.status_code == 200  # still answering while draining
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    result = CliRunner().invoke(
        app, ["predict", str(image), "--model", "pets@1", "-C", str(project.root), "--json"]
    )
    assert result.exit_code == 0, result.output
    [local] = [json.loads(line) for line in result.stdout.splitlines()]
    assert local["label"] == served["label"]
    assert local["probabilities"] == served["probabilities"]
    both = CliRunner().invoke(
        app,
        [
            "predict",
            str(image),
            "--model",
            "pets@1",
            "--env",
            "production",
            "-C",
            str(project.root),
        ],
    )
    assert both.exit_code == 2 and "exactly one" in both.stderr
    neither = CliRunner().invoke(app, ["predict", str(image), "-C", str(project.root), "--json"])
    assert neither.exit_code == 0  # what production serves, without being asked
    assert json.loads(neither.stdout)["model"] == {"name": "pets", "version": 1}
