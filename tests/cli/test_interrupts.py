"""Stopping `kennel data ingest`: Ctrl-C (pressed twice, too) and SIGTERM each end it in one
line with 130 / 143, its pool's workers end with it, and the same command then resumes. In a
terminal its progress bar runs no thread of its own, so its workers can still be forked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from kennel.cli import render
from kennel.datasets.synth import generate
from kennel.progress import Event
from tests.conftest import make_project

COUNT = 1500


def _ingest(lake: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "kennel.cli", "data", "ingest", str(lake), "-d", "park",
            "-C", str(root), "--workers", "2"]  # fmt: skip


def _records(root: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(root / ".kennel" / "kennel.db", timeout=1) as c:
            return int(c.execute("SELECT count(*) FROM ingest_records").fetchone()[0])
    except sqlite3.Error:
        return 0


def _running(proc: subprocess.Popen[str], root: Path) -> list[psutil.Process]:
    """The pool's workers, once the ingest has checkpointed some work (the pool is busy)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        workers = psutil.Process(proc.pid).children(recursive=True)
        if len(workers) >= 2 and _records(root) > 0:
            return workers
        time.sleep(0.02)
    raise AssertionError("the ingest finished (or failed) before it could be stopped")


def _gone(workers: list[psutil.Process], seconds: float = 10) -> bool:
    _stopped, alive = psutil.wait_procs(workers, timeout=seconds)
    for worker in alive:
        worker.kill()
    return not alive


@pytest.mark.parametrize("how", ["ctrl-c twice", "sigterm"])
def test_a_stopped_ingest_says_so_in_one_line_and_resumes(tmp_path: Path, how: str) -> None:
    lake = tmp_path / "lake"
    generate(lake, COUNT, seed=5, workers=2)
    root = make_project(tmp_path / "p").root
    proc = subprocess.Popen(
        _ingest(lake, root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    workers = _running(proc, root)
    if how == "sigterm":
        os.kill(proc.pid, signal.SIGTERM)
    else:  # what a terminal does: the whole process group, and a second press soon after
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.05)
        with_second = proc.poll() is None
        if with_second:
            os.killpg(proc.pid, signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=60)  # it used to wait for its workers for ever
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert _gone(workers), "workers outlived the stopped ingest"
    assert "Traceback" not in err
    if how == "sigterm":
        assert proc.returncode == 143
        assert err.splitlines()[-1].startswith("error: interrupted by SIGTERM; run the same")
    else:
        # 130, or death by SIGINT where the second press came during the interpreter's exit
        assert proc.returncode in (130, -signal.SIGINT)
        assert err.startswith("error: interrupted; run the same command again")
    again = subprocess.run(_ingest(lake, root), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resumed run" in again.stdout


def test_a_terminal_bar_that_does_not_tick_starts_no_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(render.err_console, "_force_terminal", True)
    before = threading.active_count()
    with render.reporting(ticking=False) as show:
        show(Event("ingest", done=1, total=10))
        assert threading.active_count() == before
    with render.reporting() as show:
        show(Event("ingest", done=1, total=10))
        assert threading.active_count() > before  # a ticking bar has its refresh thread


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_does_not_cut_the_cleanup(second: signal.Signals) -> None:
    """A terminal's second Ctrl-C (or a SIGTERM after it) during the cleanup: the cleanup ends
    and the command says one line (it cut a database pool's close short, with a traceback)."""
    import typer

    from kennel.cli.app import interruptible

    cleaned: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(typer.Exit) as stopped, interruptible("go on"):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler raises before this ends
            cleaned.append("never")
        finally:
            os.kill(os.getpid(), second)
            time.sleep(0.05)  # where a second signal would land
            cleaned.append("done")
    assert stopped.value.exit_code == 130 and cleaned == ["done"]
    assert signal.getsignal(signal.SIGINT) is before  # Python's own handler again
