"""A build that fails says so in one line with its error's exit code, and the run it started is
recorded as failed (an interrupted one, or one a killed process left ``running``, is what
``--resume`` continues)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.errors import TrainingError
from kennel.train.trainer import Trainer
from kennel.wiring import Workspace
from tests.conftest import TINY_TRAIN, make_project
from tests.helpers import jpeg, labelled_jpegs, write_tree

runner = CliRunner()


def test_a_failing_training_run_is_marked_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path / "p", sections={"train": TINY_TRAIN}, workers=1)
    root = str(project.root)
    write_tree(tmp_path / "lake", labelled_jpegs(40, seed=5))
    ingested = runner.invoke(app, ["data", "ingest", str(tmp_path / "lake"), "-d", "d", "-C", root])
    assert ingested.exit_code == 0, ingested.output

    def fails(self: Trainer, *, resume: bool = False) -> None:
        raise TrainingError("the loss is nan at epoch 1")  # what a diverging run raises

    monkeypatch.setattr(Trainer, "fit", fails)
    result = runner.invoke(app, ["train", "-d", "d", "-C", root])
    assert result.exit_code == 11, result.output  # TrainingError
    assert result.stderr.strip().splitlines() == ["error: the loss is nan at epoch 1"]
    ws = Workspace(project)
    try:
        [run] = ws.tracker.runs(kind="final")
        assert ws.registry.versions() == []
    finally:
        ws.close()
    assert run.status == "failed" and run.finished_at is not None


def test_a_balance_column_no_image_has_fails_before_any_run(tmp_path: Path) -> None:
    """Said while the build is planned: it was found once training had begun, its run
    recorded as failed."""
    train = {**TINY_TRAIN, "balance_by": "camera"}  # no image has a camera column
    project = make_project(tmp_path / "p", sections={"train": train}, workers=1)
    root = str(project.root)
    write_tree(tmp_path / "lake", labelled_jpegs(40, seed=5))
    ingested = runner.invoke(app, ["data", "ingest", str(tmp_path / "lake"), "-d", "d", "-C", root])
    assert ingested.exit_code == 0, ingested.output
    result = runner.invoke(app, ["train", "-d", "d", "-C", root])
    assert result.exit_code == 11, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: train.balance_by: no training image of d@")
    assert line.endswith("has a 'camera' column")
    ws = Workspace(project)
    try:
        assert ws.tracker.runs() == []
    finally:
        ws.close()


def test_data_that_cannot_make_a_model_fails_before_any_run(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", sections={"train": TINY_TRAIN}, workers=1)
    root = str(project.root)
    write_tree(tmp_path / "lake", labelled_jpegs(12, seed=6, labels=("cat",)))
    ingested = runner.invoke(app, ["data", "ingest", str(tmp_path / "lake"), "-d", "d", "-C", root])
    assert ingested.exit_code == 0, ingested.output

    result = runner.invoke(app, ["train", "-d", "d", "-C", root])
    assert result.exit_code == 11, result.output
    assert "has 1 label(s); need at least 2" in result.stderr
    ws = Workspace(project)
    try:
        assert ws.tracker.runs() == []
    finally:
        ws.close()


def test_a_model_that_fails_its_gates_is_registered_and_the_command_exits_1(
    tmp_path: Path,
) -> None:
    """`kennel train && kennel deploy ...` must stop at the first: the model is registered
    (to look into) and its result printed, then one error line, exit 1. `pipeline run` too."""
    sections = {"train": TINY_TRAIN, "gates": {"min_accuracy": 1.0}}
    project = make_project(tmp_path / "p", sections=sections, workers=1)
    root = str(project.root)
    # one picture, its bytes made distinct by a comment, half labelled cat and half dog: any
    # model answers them all alike, so no test split of both labels is ever all right
    picture = jpeg(seed=3)
    write_tree(tmp_path / "lake", {
        f"{('cat', 'dog')[i % 2]}/{i:02d}.jpg": picture[:2] + b"\xff\xfe\x00\x04" + bytes([i, 0])
        + picture[2:]
        for i in range(40)
    })  # fmt: skip
    ingested = runner.invoke(app, ["data", "ingest", str(tmp_path / "lake"), "-d", "d", "-C", root])
    assert ingested.exit_code == 0, ingested.output
    result = runner.invoke(app, ["train", "-d", "d", "--json", "-C", root])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["model"]["ref"] == "pets@1"  # the result, as ever
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: pets@1 failed its quality gates (accuracy ")
    assert last.endswith("): registered, but never to be released")
    piped = runner.invoke(app, ["pipeline", "run", "--dataset", "d", "-C", root])
    assert piped.exit_code == 1, piped.output
    assert piped.stderr.strip().splitlines()[-1].startswith("error: pets@2 failed its quality")
    ws = Workspace(project)
    try:
        assert [(v.ref, v.gates_passed) for v in ws.registry.versions()] == [
            ("pets@1", False),
            ("pets@2", False),
        ]
    finally:
        ws.close()
