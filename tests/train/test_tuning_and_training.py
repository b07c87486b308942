"""Search strategies, tracked trials, reproducibility and quantization on tiny synthetic data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kennel.config import Project
from kennel.datasets.synth import generate
from kennel.errors import ConfigError
from kennel.pipeline.build import BuildOptions
from kennel.wiring import Workspace
from tests.conftest import TINY_TRAIN, make_project


@pytest.fixture(scope="module")
def synth_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("synth")
    generate(root / "lake", 160, seed=7)
    search = {
        "method": "grid",
        "trials": 10,
        "space": {"lr": {"values": [0.001, 0.003]}, "augment": {"values": [0.0]}},
    }
    project = make_project(
        root / "p",
        sections={"train": {**TINY_TRAIN, "search": search}, "model": {"quantize": True}},
        workers=1,
    )
    ws = Workspace(project)
    try:
        ws.ingestor().run(ws.source(str(root / "lake")), "park")
    finally:
        ws.close()
    yield project


def test_grid_search_tracks_every_trial(synth_project: Project) -> None:
    ws = Workspace(synth_project)
    try:
        result = ws.builder().build("park", BuildOptions())
        trials = ws.tracker.runs(study=result.study, kind="trial")
        epochs = {t.id: ws.tracker.epochs(t.id) for t in trials}
        final = ws.tracker.get(result.run_id)
    finally:
        ws.close()
    assert len(trials) == 2  # the grid has two points, fewer than the 10 allowed
    assert sorted(t.params["lr"] for t in trials) == [0.001, 0.003]
    for t in trials:
        assert t.status == "completed" and t.duration_s is not None and t.duration_s > 0
        assert sorted(epochs[t.id]) == [1, 2]
        assert {"train_loss", "val_loss", "val_accuracy"} <= set(epochs[t.id][1])
        assert t.dataset_version == final.dataset_version
    assert final.kind == "final" and final.study == result.study
    assert result.config.lr in (0.001, 0.003)
    # quantization was tried and its decision follows its own numbers
    q = result.quantization
    assert q is not None
    keep = q.accuracy_fp32 - q.accuracy_int8 <= 0.005 and q.latency_int8_ms < q.latency_fp32_ms
    assert q.kept == keep
    assert ("model.int8.onnx" in result.model.files) == keep


def test_training_is_reproducible(synth_project: Project) -> None:
    ws = Workspace(synth_project)
    try:
        a = ws.builder().build("park", BuildOptions(trials=1, epochs=2))
        b = ws.builder().build("park", BuildOptions(trials=1, epochs=2))
    finally:
        ws.close()
    assert [h.val_loss for h in a.history] == [h.val_loss for h in b.history]
    assert a.evaluation.accuracy == b.evaluation.accuracy


def test_bad_search_space_names_the_key(tmp_path: Path, synth_project: Project) -> None:
    bad = {"method": "grid", "space": {"lr": {"low": 0.001, "high": 0.01}}}
    project = make_project(tmp_path / "bad", sections={"train": {**TINY_TRAIN, "search": bad}})
    ws = Workspace(project)
    try:
        ws.ingestor().run(ws.source(str(synth_project.root.parent / "lake")), "park")
        with pytest.raises(ConfigError, match=r"train\.search\.space\.lr"):
            ws.builder().build("park", BuildOptions(trials=2))
    finally:
        ws.close()


def test_a_trial_that_did_not_complete_is_shown_without_an_accuracy() -> None:
    from kennel.train.tune import TrialSummary

    pruned = TrialSummary(3, "r", {"lr": 0.01}, "pruned", None, 1.0)
    assert pruned.line() == "  trial 3: pruned {'lr': 0.01}"
    assert pruned.as_dict()["val_accuracy"] is None
    done = TrialSummary(4, "r", {"lr": 0.01}, "completed", 0.8125, 1.0)
    assert done.line() == "  trial 4: completed val_accuracy=0.8125 {'lr': 0.01}"
