"""A served project shared by the hostile-input tests, and the service as its own process, so
its memory can be measured apart from the test's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from kennel.config import Project
from kennel.wiring import Workspace
from tests.hostile.corpus import corpus
from tests.serving import served_project, wait_until


@pytest.fixture(scope="session")
def hostile_corpus() -> dict[str, bytes]:
    return corpus()


@pytest.fixture(scope="session")
def hostile_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = served_project(tmp_path_factory.mktemp("hostile"), models=1, poll_s=3600)
    ws = Workspace(project)
    try:
        ws.registry.set_alias("pets", "production", 1, actor="test", reason="hostile")
    finally:
        ws.close()
    return project


@dataclass
class ServiceProcess:
    url: str
    process: psutil.Process
    root: Path

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def peak_rss(self) -> int:
        """VmHWM: the highest resident set size the process has ever had, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")

    def reset_peak(self) -> None:
        """Start VmHWM again from the current RSS (Linux: write 5 to clear_refs)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")


@pytest.fixture(scope="session")
def service_process(hostile_project: Project) -> Iterator[ServiceProcess]:
    """``kennel serve production`` as a child process on the environment's port."""
    kennel = Path(sys.executable).with_name("kennel")
    url = hostile_project.config.environments["production"].url
    root = hostile_project.root
    log = root / "serve.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [str(kennel), "serve", "--env", "production", "--drain", "0", "-C", str(root)],
            env=dict(os.environ),  # PYTHONPATH included: the child runs this checkout
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def ready() -> bool:
        assert child.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, timeout=60)
        yield ServiceProcess(url, psutil.Process(child.pid), hostile_project.root)
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)
