"""kill -9 in the middle of an ingest: no pool worker outlives it, and running it again gives
the same version as an uninterrupted run. The command's workers are forked, where that is
safe (``engines.start_method``)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import psutil
import pytest

from kennel.datasets.synth import generate
from kennel.ingest import engines
from kennel.ingest.engines import FORK_UNSAFE, start_method
from kennel.wiring import Workspace
from tests.conftest import make_project

COUNT = 1200


def _records(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as c:
            return int(c.execute("SELECT count(*) FROM ingest_records").fetchone()[0])
    except sqlite3.Error:
        return 0


def _ingest_cmd(lake: Path, root: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kennel.cli",
        "data",
        "ingest",
        str(lake),
        "-d",
        "park",
        "-C",
        str(root),
        "--workers",
        "2",
        "--json",
    ]


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie waiting for init to reap it is dead)."""
    alive = []
    for proc in procs:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def _cmdline(proc: psutil.Process) -> str:
    """The command line, or "" for a process that exited since it was listed."""
    try:
        return " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return ""


def _outlived(workers: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _alive(workers)


def test_kill9_leaves_no_workers_and_rerun_gives_same_version(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    generate(lake, COUNT, seed=4, workers=2)
    killed = make_project(tmp_path / "killed")
    proc = subprocess.Popen(
        _ingest_cmd(lake, killed.root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    db = killed.root / ".kennel" / "kennel.db"
    deadline = time.monotonic() + 120
    workers: list[psutil.Process] = []
    try:
        # Kill at the first checkpoint that shows work, while the pool runs: checkpoints are
        # batched in time (CHECKPOINT_S), so on a fast machine a later one may come after the
        # pool has already finished every chunk. A child that has already exited (a zombie
        # until its parent reaps it) is not counted: it has no command line to read.
        while time.monotonic() < deadline and proc.poll() is None:
            workers = _alive(psutil.Process(proc.pid).children(recursive=True))
            if len(workers) >= 2 and _records(db) > 0:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "ingest finished before it could be killed"
        assert len(workers) >= 2, workers  # the pool is running
        # the command's workers are forked (a spawned one runs multiprocessing's spawn_main)
        assert not [w for w in workers if "spawn_main" in _cmdline(w)]
        # Only the main process, as the OOM killer or a crash would: its workers must follow.
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:  # a failed check above must not leave the ingest running
            proc.kill()
        proc.wait()
    try:
        left = _outlived(workers, 5.0)
        assert not left, f"workers outlived the killed ingest: {[p.pid for p in left]}"
    finally:
        for worker in _alive(workers):  # the old code's orphans would block forever
            worker.kill()
    done_before = _records(db)
    assert 0 < done_before < COUNT

    rerun = subprocess.run(
        _ingest_cmd(lake, killed.root), capture_output=True, text=True, check=True
    )
    assert '"resumed": true' in rerun.stdout

    clean = make_project(tmp_path / "clean")
    subprocess.run(_ingest_cmd(lake, clean.root), capture_output=True, check=True)

    versions = []
    for project in (killed, clean):
        ws = Workspace(project)
        try:
            [version] = ws.catalog.versions("park")
            versions.append(version.id)
            with ws.db.session() as s:
                from sqlalchemy import func, select

                from kennel.db.schema import IngestRecordRow

                records = s.scalar(select(func.count()).select_from(IngestRecordRow))
            assert records == COUNT  # each file recorded exactly once, none twice
            assert not [k for k in ws.content.blobs.list() if ".tmp-" in k]
        finally:
            ws.close()
    assert versions[0] == versions[1]


def test_workers_fork_only_where_it_is_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    for name in FORK_UNSAFE:
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert start_method() == "fork"
    monkeypatch.setattr(threading, "active_count", lambda: 2)  # another Python thread
    assert start_method() == "spawn"
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    for name in FORK_UNSAFE:  # a process that trained, served or read video before
        with monkeypatch.context() as loaded:
            loaded.setitem(sys.modules, name, types.ModuleType(name))
            assert start_method() == "spawn"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert start_method() == "spawn"
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(engines, "_os_threads", lambda: 3)  # native threads (Arrow, BLAS)
    monkeypatch.setattr(sys, "version_info", (3, 12, 0))
    assert start_method() == "spawn"  # Python 3.12 deprecates a fork beside any thread
    monkeypatch.setattr(sys, "version_info", (3, 11, 7))
    assert start_method() == "fork"
