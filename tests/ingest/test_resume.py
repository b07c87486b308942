"""kill -9 in the middle of an ingest, run it again: same version as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from kennel.datasets.synth import generate
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


def test_kill9_then_rerun_gives_same_version(tmp_path: Path) -> None:
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
    while _records(db) < COUNT // 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
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
