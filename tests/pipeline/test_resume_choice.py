"""Which interrupted final run a build continues: ``kennel train --resume`` the newest one, with
its own settings (none is one line); ``kennel pipeline run`` only one that trains what the
pipeline would (never an unrelated run left by another command); a linear probe, which writes
no checkpoint, is resumable all the same."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kennel.config import TrainConfig
from kennel.datasets.versioning import DatasetVersion
from kennel.errors import NotFoundError, StateError
from kennel.package import bundle
from kennel.pipeline.options import BuildOptions
from kennel.pipeline.steps.train import OWNER, owned, run_to_resume, still_resumable
from kennel.train.trainer import CHECKPOINT
from kennel.wiring import Workspace

VERSION = DatasetVersion("pets", "ab" * 32, 1, None, "0" * 64, None, datetime.now(UTC), 10, {}, {})
SMALL = TrainConfig.model_validate({"arch": "small_cnn", "epochs": 40, "search": {"trials": 1}})
BEST = BuildOptions(preset="best", image_size=96, trials=1)


def _left(
    ws: Workspace,
    runs: Path,
    config: TrainConfig,
    *,
    status: str = "interrupted",
    checkpoint: bool = True,
    study: str | None = None,
) -> str:
    """A final run on VERSION stopped (``interrupted``) or killed (left ``running``)."""
    run_id = ws.tracker.start(
        kind="final",
        dataset="pets",
        dataset_version=VERSION.id,
        params=bundle.params(config),
        study=study,
    )
    if status != "running":
        ws.tracker.finish(run_id, status)
    if checkpoint:
        (runs / run_id).mkdir(parents=True)
        (runs / run_id / CHECKPOINT).write_bytes(b"saved")
    return run_id


def _resumed(ws: Workspace, runs: Path, options: BuildOptions, config: TrainConfig) -> str | None:
    run = run_to_resume(options, config, VERSION, None, tracker=ws.tracker, runs_root=runs)
    return run.id if run else None


def test_pipeline_resumes_only_the_run_it_would_train(workspace: Workspace, tmp_path: Path) -> None:
    small = _left(workspace, tmp_path, SMALL)  # `kennel train -d pets --epochs 40`, SIGTERM
    same = BuildOptions(**{**BEST.__dict__, "resume": "same"})
    best = same.apply(SMALL)
    assert _resumed(workspace, tmp_path, same, best) is None  # the pipeline starts afresh
    newest = BuildOptions(resume="newest")  # an explicit --resume takes it, as it is
    assert _resumed(workspace, tmp_path, newest, SMALL) == small
    # the pipeline's own interrupted run (a probe: no checkpoint) is the one it goes on with
    probe = _left(workspace, tmp_path, best, status="running", checkpoint=False)
    assert _resumed(workspace, tmp_path, same, best) == probe
    # the same small CNN pipeline, asked for: that run, even behind a newer unrelated one
    mine = BuildOptions(epochs=40, trials=1, resume="same")
    assert _resumed(workspace, tmp_path, mine, mine.apply(SMALL)) == small
    assert _resumed(workspace, tmp_path, BuildOptions(resume="off"), SMALL) is None


def test_a_searching_pipeline_resumes_a_searched_run_that_agrees_on_every_fixed_key(
    workspace: Workspace, tmp_path: Path
) -> None:
    searching = BuildOptions(trials=4, resume="same")
    config = searching.apply(SMALL)
    # the same settings, but not picked by a search: not what a searching build would train
    _left(workspace, tmp_path, config)
    assert _resumed(workspace, tmp_path, searching, config) is None
    picked = config.model_copy(update={"lr": 0.0042, "augment": 0.6})  # the search's best
    searched = _left(workspace, tmp_path, picked, study="s1")
    assert _resumed(workspace, tmp_path, searching, config) == searched
    # another fixed key (epochs), another build
    other = BuildOptions(trials=4, epochs=12, resume="same")
    assert _resumed(workspace, tmp_path, other, other.apply(SMALL)) is None


def test_only_a_probe_resumes_without_a_checkpoint(workspace: Workspace, tmp_path: Path) -> None:
    newest = BuildOptions(resume="newest")
    _left(workspace, tmp_path, SMALL, status="running", checkpoint=False)  # killed in epoch 1
    with pytest.raises(NotFoundError, match=f"nothing to resume on {VERSION.ref}"):
        _resumed(workspace, tmp_path, newest, SMALL)
    probe = _left(workspace, tmp_path, BEST.apply(SMALL), checkpoint=False)
    assert _resumed(workspace, tmp_path, newest, SMALL) == probe
    workspace.tracker.finish(probe, "completed")  # a finished run is never resumed
    with pytest.raises(NotFoundError):
        _resumed(workspace, tmp_path, newest, SMALL)


def test_a_run_another_process_trains_now_is_neither_resumed_nor_trained_twice(
    workspace: Workspace, tmp_path: Path
) -> None:
    """A run left "running" may still be training: while a live process holds its lock,
    `--resume` names it and refuses, a pipeline starts afresh, and claiming it fails; once
    that process is killed (-9), the run is resumable again."""
    run_id = _left(workspace, tmp_path, SMALL, status="running")
    holder = subprocess.Popen(  # the process training it, holding the run's lock
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
         str(tmp_path / run_id / OWNER)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(StateError, match=f"run {run_id} is being trained by another"):
            _resumed(workspace, tmp_path, BuildOptions(resume="newest"), SMALL)
        same = BuildOptions(epochs=40, trials=1, resume="same")
        assert _resumed(workspace, tmp_path, same, same.apply(SMALL)) is None
        with pytest.raises(StateError, match="another process"), owned(tmp_path, run_id):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    assert _resumed(workspace, tmp_path, BuildOptions(resume="newest"), SMALL) == run_id
    with owned(tmp_path, run_id), pytest.raises(StateError), owned(tmp_path, run_id):
        pass  # claimed by this process: no one else may claim it now


def test_a_run_finished_between_the_choice_and_the_claim_is_not_trained_again(
    workspace: Workspace, tmp_path: Path
) -> None:
    """Two `--resume` at once both choose the same run; the second to claim it finds it
    finished by the first and refuses (it trained it again and registered a second model)."""
    run_id = _left(workspace, tmp_path, SMALL)
    chosen = run_to_resume(BuildOptions(resume="newest"), SMALL, VERSION, None,
                           tracker=workspace.tracker, runs_root=tmp_path)  # fmt: skip
    assert chosen is not None and still_resumable(workspace.tracker, chosen).id == run_id
    workspace.tracker.reopen(run_id)  # the other process resumed it ...
    workspace.tracker.finish(run_id, "done")  # ... and finished it
    with pytest.raises(StateError, match=f"run {run_id} was resumed by another process"):
        still_resumable(workspace.tracker, chosen)
