"""`kennel stop` ends the service its pidfile names, and nothing else: after the service died
(kill -9), its pid may belong to another process, which must not be signalled."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from kennel.deploy import environments


def _service_like(root: Path, env: str = "staging") -> subprocess.Popen[bytes]:
    """A process whose command line is the one `kennel deploy` starts for ``root``."""
    argv = ["kennel.cli", "serve", "--env", env, "-C", str(root)]
    return _running([sys.executable, "-c", "import time; time.sleep(600)", *argv])


def _running(argv: list[str]) -> subprocess.Popen[bytes]:
    """``argv`` started, once its command line shows (a vforked child may be read between
    its parent's release and the new program's arguments)."""
    proc = subprocess.Popen(argv)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if Path(f"/proc/{proc.pid}/cmdline").read_bytes():
            break
        time.sleep(0.01)
    return proc


_HALF = ["kennel.cli", "serve"]


def _stopped(proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 5
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc.returncode is not None


def test_a_pidfile_whose_process_is_another_now_is_only_removed(tmp_path: Path) -> None:
    state = tmp_path / ".kennel"
    pidfile = state / "run" / "serve-staging.pid"
    pidfile.parent.mkdir(parents=True)
    sleeper = _running(["sleep", "600"])
    others = [
        sleeper,
        # kennel-like command lines that are not this project's staging service
        _running([sys.executable, "-c", "import time; time.sleep(600)", *_HALF]),
        _service_like(tmp_path.parent / "another-project"),
        _service_like(tmp_path, env="production"),
    ]
    try:
        for other in others:
            # the pid of a service that died, now another process's: a pidfile of an older
            # kennel (the pid alone), and one whose start time is wrong; one whose start time
            # is right (forged, or a pid reused within a clock tick) unless it is an ENV
            # service (its -C may name this project's folder before a rename)
            now = environments._started_at(other.pid)
            texts = [str(other.pid), f"{other.pid} 1"]
            if other.args[-3:-1] != ["staging", "-C"]:
                texts.append(f"{other.pid} {now}")
            for text in texts:
                pidfile.write_text(text)
                assert environments.stop(state, "staging", timeout=2) is False, (other.args, text)
                assert not pidfile.exists()
        assert all(other.poll() is None for other in others)
        # what no kennel wrote: nothing is signalled, no traceback, the pidfile goes
        for junk in ("²".encode(), b"99999999999999999999", b"\xff\xfe", b"", b"-1", b"0"):
            pidfile.write_bytes(junk)
            assert environments.stop(state, "staging", timeout=2) is False
            assert not pidfile.exists()
    finally:
        for other in others:
            other.kill()
            other.wait()


def test_the_service_a_pidfile_names_is_stopped(tmp_path: Path) -> None:
    state = tmp_path / ".kennel"
    pidfile = state / "run" / "serve-staging.pid"
    pidfile.parent.mkdir(parents=True)
    for old_format in (False, True):
        service = _service_like(tmp_path)
        try:
            started = environments._started_at(service.pid)
            assert started.isdigit()
            pidfile.write_text(str(service.pid) if old_format else f"{service.pid} {started}")
            # a zombie until reaped: stop waits its timeout, then says it stopped it
            assert environments.stop(state, "staging", timeout=0.5) is True
            assert _stopped(service) and not pidfile.exists()
        finally:
            service.kill()
            service.wait()


def test_a_renamed_projects_service_is_still_stopped(tmp_path: Path) -> None:
    """The service was started with -C naming the folder before a rename: its pid and start
    time still name it, and stop ends it instead of forgetting it."""
    before, after = tmp_path / "park", tmp_path / "park-renamed"
    (before / ".kennel" / "run").mkdir(parents=True)
    service = _service_like(before)
    try:
        pidfile = before / ".kennel" / "run" / "serve-staging.pid"
        pidfile.write_text(f"{service.pid} {environments._started_at(service.pid)}")
        before.rename(after)
        assert environments.stop(after / ".kennel", "staging", timeout=0.5) is True
        assert _stopped(service)
    finally:
        service.kill()
        service.wait()


def test_stop_says_when_a_service_it_did_not_start_answers_on_the_port(tmp_path: Path) -> None:
    """After a kill -9 and a `kennel serve` by hand, `kennel stop` said only "no background
    service was running" while a service went on answering on the environment's port."""
    import yaml
    from fastapi import FastAPI
    from typer.testing import CliRunner

    from kennel.cli.main import app
    from kennel.serve.server import start_app_in_thread
    from tests.conftest import make_project
    from tests.serving import free_port

    port = free_port()
    root = make_project(tmp_path / "p").root
    config = yaml.safe_load((root / "kennel.yaml").read_text())
    config["environments"]["staging"]["port"] = port
    (root / "kennel.yaml").write_text(yaml.safe_dump(config))
    runner = CliRunner()
    quiet = runner.invoke(app, ["stop", "--env", "staging", "-C", str(root)])
    assert (
        quiet.exit_code == 0
        and quiet.stdout.strip() == "staging: no background service was running"
    )
    other = FastAPI()
    other.get("/health/live")(lambda: {"status": "live"})
    running = start_app_in_thread(other, port=port)
    try:
        told = runner.invoke(app, ["stop", "--env", "staging", "-C", str(root)])
    finally:
        running.stop()
    assert told.exit_code == 0
    assert f"but a service answers at http://127.0.0.1:{port}" in told.stdout, told.stdout


def test_stop_says_when_the_service_on_record_had_ended(tmp_path: Path) -> None:
    """After a kill -9 of the background service, `kennel stop` said only "no background
    service was running": true, but it had just removed the dead one's record."""
    from typer.testing import CliRunner

    from kennel.cli.main import app
    from tests.conftest import make_project

    project = make_project(tmp_path / "p")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pidfile = project.state_dir / "run" / "serve-staging.pid"
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{gone.pid} 1")
    runner = CliRunner()
    said = runner.invoke(app, ["stop", "--env", "staging", "-C", str(project.root)])
    assert said.exit_code == 0, said.output
    assert said.stdout.strip() == (
        "staging: no background service was running (the one started last had ended without "
        "being stopped; its record is removed)"
    )
    assert not pidfile.exists()
    again = runner.invoke(app, ["stop", "--env", "staging", "-C", str(project.root)])
    assert again.stdout.strip() == "staging: no background service was running"
