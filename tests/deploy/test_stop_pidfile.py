"""`kennel stop` ends the service its pidfile names, and nothing else: after the service died
(kill -9), its pid may belong to another process, which must not be signalled."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from kennel.deploy import environments


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "600"])


def test_a_pidfile_whose_process_is_another_now_is_only_removed(tmp_path: Path) -> None:
    pidfile = tmp_path / "run" / "serve-staging.pid"
    pidfile.parent.mkdir()
    other = _sleeper()
    try:
        # the pid of a service that died, now reused by an unrelated process
        pidfile.write_text(f"{other.pid} 1")
        assert environments.stop(tmp_path, "staging", timeout=2) is False
        assert other.poll() is None and not pidfile.exists()
        # a pidfile of an older kennel (the pid alone): only `kennel serve --env ENV` is
        # stopped, not any process whose command line says kennel
        look_alike = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)", "kennel.cli", "serve"]
        )
        for pid in (other.pid, look_alike.pid):
            pidfile.write_text(str(pid))
            assert environments.stop(tmp_path, "staging", timeout=2) is False
            assert not pidfile.exists()
        assert other.poll() is None and look_alike.poll() is None
        look_alike.kill()
        look_alike.wait()
        # what no kennel wrote: nothing is signalled, no traceback, the pidfile goes
        for junk in ("²".encode(), b"99999999999999999999", b"\xff\xfe", b"", b"-1", b"0"):
            pidfile.write_bytes(junk)
            assert environments.stop(tmp_path, "staging", timeout=2) is False
            assert not pidfile.exists()
    finally:
        other.kill()
        other.wait()


def test_the_process_a_pidfile_names_is_stopped(tmp_path: Path) -> None:
    pidfile = tmp_path / "run" / "serve-staging.pid"
    pidfile.parent.mkdir()
    service = _sleeper()
    try:
        started = environments._started_at(service.pid)
        assert started.isdigit()
        pidfile.write_text(f"{service.pid} {started}")
        assert environments.stop(tmp_path, "staging", timeout=0.5) is True  # a zombie till reaped
        deadline = time.monotonic() + 5
        while service.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.returncode is not None and not pidfile.exists()
    finally:
        service.kill()
        service.wait()
