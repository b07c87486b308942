"""A run's status tells whether it still runs: a process killed with -9 cannot mark its run,
so a ``running`` run that no live process holds reads ``interrupted`` everywhere runs are read
(``kennel runs list``, the dashboard's pages and studies), on SQLite and on PostgreSQL; its
resume holds it again."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kennel.db import Database
from kennel.db.runs import RunStore
from kennel.train.tracking import RunTracker
from tests.serving import wait_until

HOLDER = textwrap.dedent(
    """
    import sys, time
    from kennel.db import Database
    from kennel.train.tracking import RunTracker
    tracker = RunTracker(Database.open(sys.argv[1]))
    run_id = tracker.start(kind="trial", dataset="pets", dataset_version="v" * 64, params={},
                           study="s1", trial_number=0)
    print(run_id, flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def db(metadata_url: str) -> Iterator[Database]:
    database = Database.open(metadata_url)
    yield database
    database.dispose()


def test_a_run_whose_process_was_killed_reads_interrupted(db: Database, metadata_url: str) -> None:
    tracker = RunTracker(db)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, metadata_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        run_id = holder.stdout.readline().strip()
        assert len(run_id) == 32, run_id
        assert tracker.get(run_id).status == "running"  # its process lives: it runs
        assert [r.id for r in tracker.runs(status="running")] == [run_id]
        assert tracker.runs(status="interrupted") == []
        assert tracker.store.studies(limit=1)[0].statuses == {"running": 1}
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    # PostgreSQL lets a session's advisory lock go when its backend sees the connection
    # drop, a moment after the client died (the CI run read "running" once); flock is at once
    wait_until(lambda: tracker.get(run_id).status == "interrupted", timeout=10)
    assert [r.id for r in tracker.runs(status="interrupted")] == [run_id]
    assert tracker.runs(status="running") == []
    assert [r.id for r in tracker.store.page(limit=5, status="interrupted")] == [run_id]
    assert tracker.store.count(status="running") == 0
    assert [t.status for t in tracker.store.trial_values("s1", "val_accuracy")] == ["interrupted"]
    assert tracker.store.studies(limit=1)[0].statuses == {"interrupted": 1}

    tracker.reopen(run_id)  # a resume holds it again
    assert tracker.get(run_id).status == "running"
    assert RunTracker(db).get(run_id).status == "running"  # as any other reader sees it
    tracker.finish(run_id, "completed")
    assert tracker.get(run_id).status == "completed"
    assert [r.status for r in tracker.runs()] == ["completed"]


def test_runs_started_here_read_running_until_finished(db: Database) -> None:
    tracker = RunTracker(db)
    run_id = tracker.start(kind="final", dataset="pets", dataset_version="v" * 64, params={})
    assert RunTracker(db).get(run_id).status == "running"
    tracker.finish(run_id, "failed")
    assert RunTracker(db).get(run_id).status == "failed"


def test_a_project_where_no_lock_can_be_made_reads_runs_as_stored(tmp_path: Path) -> None:
    """A read-only project cannot make the look's lock file: `runs list` failed there (exit 1)
    for any run stored running. It cannot tell, so the run reads as it was stored."""
    db = Database.open(f"sqlite:///{tmp_path / 'kennel.db'}")
    try:
        run = RunStore(db).start(kind="final", dataset="pets", dataset_version="v" * 64,
                                 params={}, study=None, trial_number=None, git_commit=None,
                                 init_from=None, actor="t")  # fmt: skip
        locks = tmp_path / "kennel.db.locks"
        shutil.rmtree(locks, ignore_errors=True)
        locks.write_text("not a folder: no lock file can be made in it\n")
        assert RunTracker(db).get(run.id).status == "running"
        assert [r.status for r in RunTracker(db).runs()] == ["running"]
    finally:
        db.dispose()
