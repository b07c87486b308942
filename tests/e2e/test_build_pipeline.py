"""The build must-shows on the real mini zip: pipeline -> registered, parity-checked bundle whose
report equals scikit-learn on the stored predictions; gates recorded; resume after kill -9;
warm start; lineage to source files; pretrained beats scratch."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import Project
from kennel.pipeline.build import BuildOptions
from kennel.train.trainer import CHECKPOINT
from kennel.wiring import Workspace
from tests.conftest import TINY_TRAIN, make_project

runner = CliRunner()


def _cli(*args: str) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def mini(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("mini")
    project = make_project(
        root / "p",
        sections={
            "train": TINY_TRAIN,
            "pipeline": {"dataset": "mini", "source": str(shared_data / "dogs-vs-cats-mini.zip")},
        },
        workers=1,
    )
    yield project


def test_pipeline_registers_a_parity_checked_bundle(mini: Project, tmp_path: Path) -> None:
    root = str(mini.root)
    out = _cli("pipeline", "run", "--trials", "2", "--search", "random", "-C", root)
    assert [s["step"] for s in out["steps"]] == ["ingest", "build"]
    build = out["steps"][1]
    assert build["parity_passed"] and not build["skipped"]
    # neither the trials nor the final run keep a checkpoint once they are done
    runs = mini.root / ".kennel" / "runs"
    assert len(list(runs.iterdir())) == 3 and not list(runs.rglob("checkpoint.*"))
    model = _cli("models", "show", out["model"], "-C", root)
    assert {
        "model.onnx",
        "kennel-model.json",
        "report.json",
        "report.html",
        "MODEL_CARD.md",
    } <= set(model["files"])

    _cli("models", "download", out["model"], str(tmp_path / "bundle"), "-C", root)
    meta = json.loads((tmp_path / "bundle" / "kennel-model.json").read_text())
    report = json.loads((tmp_path / "bundle" / "report.json").read_text())
    assert all(len(values) <= 20 for values in report["slices"].values())
    page = (tmp_path / "bundle" / "report.html").read_text()
    assert "<pre>" not in page and "Per class" in page and "Worst mistakes" in page
    assert meta["parity"]["passed"] and meta["parity"]["images"] == 200
    assert meta["parity"]["max_abs_logit_diff"] <= 1e-4
    assert meta["labels"] == ["cat", "dog"] and meta["dataset"]["name"] == "mini"
    for name, digest in meta["files"].items():
        import hashlib

        assert hashlib.sha256((tmp_path / "bundle" / name).read_bytes()).hexdigest() == digest
    session = ort.InferenceSession(str(tmp_path / "bundle" / "model.onnx"))
    assert [o.name for o in session.get_outputs()] == ["logits", "embedding"]
    assert session.get_inputs()[0].shape[0] in ("batch", None)

    # the report's numbers are scikit-learn's on the stored predictions
    report = json.loads((tmp_path / "bundle" / "report.json").read_text())
    ws = Workspace(mini)
    try:
        table = pq.read_table(io.BytesIO(ws.content.get(report["predictions_sha256"])))
        trials = ws.tracker.runs(kind="trial")
    finally:
        ws.close()
    labels = np.array([["cat", "dog"].index(x) for x in table.column("label").to_pylist()])
    logits = np.stack(
        [table.column("logit_cat").to_numpy(), table.column("logit_dog").to_numpy()], 1
    )
    predicted = logits.argmax(1)
    assert report["accuracy"] == accuracy_score(labels, predicted)
    p, r, _f1, _ = precision_recall_fscore_support(labels, predicted, zero_division=0)
    assert [report["per_class"][c]["precision"] for c in ("cat", "dog")] == list(p)
    assert [report["per_class"][c]["recall"] for c in ("cat", "dog")] == list(r)
    assert report["confusion"] == confusion_matrix(labels, predicted).tolist()
    assert len(trials) == 2 and all(t.dataset_version == meta["dataset"]["version"] for t in trials)

    again = _cli("pipeline", "run", "--trials", "2", "--search", "random", "-C", root)
    assert [s["skipped"] for s in again["steps"]] == [True, True]
    assert again["model"] == out["model"]


def test_failed_gate_is_recorded(shared_data: Path, tmp_path: Path) -> None:
    strict = make_project(
        tmp_path / "strict",
        sections={"train": TINY_TRAIN, "gates": {"min_accuracy": 0.99}},
        workers=1,
    )
    ws = Workspace(strict)
    try:
        ws.ingestor().run(ws.source(str(shared_data / "dogs-vs-cats-mini.zip")), "mini")
        result = ws.builder().build("mini", BuildOptions(trials=1))
        model = ws.registry.resolve(result.model.ref)
    finally:
        ws.close()
    assert not model.gates_passed
    assert any(r.startswith("accuracy ") for r in model.gate_reasons)
    assert "champion" not in model.aliases


def test_lineage_and_warm_start(mini: Project) -> None:
    root = str(mini.root)
    first = _cli("models", "list", "-C", root)[-1]["ref"]
    lineage = _cli("lineage", "model", first, "--all-files", "-C", root)
    files = lineage["dataset"]["source_files"]
    assert len(files) == 160 and all("dogs-vs-cats-mini.zip" in f for f in files)
    assert lineage["run"]["kind"] == "final" and lineage["study"]["trials"]
    for extra, heading in (([], "160 training files, the first 20 (--all-files lists every one):"),
                           (["--all-files"], "160 training files:")):  # fmt: skip
        shown = runner.invoke(app, ["lineage", "model", first, "-C", root, *extra])
        assert shown.exit_code == 0 and heading in shown.stdout, shown.stdout
        listed = shown.stdout.split(heading, 1)[1].split()
        assert len(listed) == (160 if extra else 20)
    warm = _cli(
        "train", "-d", "mini", "--init-from", first, "--epochs", "1", "--trials", "1", "-C", root
    )
    assert warm["run_id"] != lineage["run"]["id"]
    assert _cli("lineage", "model", warm["model"]["ref"], "-C", root)["warm_start_from"] == first


def _epochs_logged(db: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(db, timeout=1) as c:
            return int(c.execute("SELECT count(DISTINCT epoch) FROM run_metrics").fetchone()[0])
    except sqlite3.Error:
        return 0


def _ingested_mini(root: Path, shared_data: Path) -> Project:
    project = make_project(
        root, sections={"train": {**TINY_TRAIN, "epochs": 6, "patience": 10}}, workers=1
    )
    ws = Workspace(project)
    try:
        ws.ingestor().run(ws.source(str(shared_data / "dogs-vs-cats-mini.zip")), "mini")
    finally:
        ws.close()
    return project


def _training(
    project: Path,
    stderr: int | None = subprocess.DEVNULL,
    command: tuple[str, ...] = ("train", "-d", "mini"),
) -> subprocess.Popen[str]:
    """``kennel train`` (or ``command``) in a process of its own, returned once two epochs are
    logged."""
    cmd = [sys.executable, "-m", "kennel.cli", *command, "-C", str(project)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True, text=True
    )
    db = project / ".kennel" / "kennel.db"
    deadline = time.monotonic() + 180
    while _epochs_logged(db) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be stopped"
    time.sleep(0.15)  # land inside the next epoch
    return proc


def _resumes_to_the_end(project: Project) -> None:
    result = runner.invoke(
        app, ["train", "-d", "mini", "--resume", "-C", str(project.root), "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [h["epoch"] for h in out["history"]] == [1, 2, 3, 4, 5, 6]
    ws = Workspace(project)
    try:
        finals = ws.tracker.runs(kind="final")
    finally:
        ws.close()
    assert len(finals) == 1 and finals[0].status == "completed" and finals[0].id == out["run_id"]


def test_kill9_mid_epoch_then_resume(shared_data: Path, tmp_path: Path) -> None:
    project = _ingested_mini(tmp_path / "resume", shared_data)
    proc = _training(project.root)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    logged = _epochs_logged(project.root / ".kennel" / "kennel.db")
    assert 2 <= logged < 6
    _resumes_to_the_end(project)


def test_sigterm_mid_epoch_marks_the_run_interrupted_then_resume(
    shared_data: Path, tmp_path: Path
) -> None:
    """SIGTERM (a scheduler, systemd, docker stop) leaves no run ``running`` for ever: it is
    marked ``interrupted``, its checkpoint kept, and ``--resume`` finishes it."""
    project = _ingested_mini(tmp_path / "term", shared_data)
    proc = _training(project.root, stderr=subprocess.PIPE)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: interrupted by SIGTERM") and "--resume" in last, err
    assert "Traceback" not in err
    assert 2 <= _epochs_logged(project.root / ".kennel" / "kennel.db") < 6
    ws = Workspace(project)
    try:
        [run] = ws.tracker.runs(kind="final")
        assert run.status == "interrupted" and run.finished_at is not None
        assert (project.root / ".kennel" / "runs" / run.id / CHECKPOINT).is_file()
    finally:
        ws.close()
    # a damaged checkpoint (one byte of its weights changed) is refused in one error line,
    # exit 8, before anything of it is used; the run stays resumable once its bytes are put back
    checkpoint = project.root / ".kennel" / "runs" / run.id / CHECKPOINT
    kept = checkpoint.read_bytes()
    damaged = bytearray(kept)
    damaged[len(kept) // 2] ^= 0x01
    checkpoint.write_bytes(bytes(damaged))
    refused = runner.invoke(app, ["train", "-d", "mini", "--resume", "-C", str(project.root)])
    assert refused.exit_code == 8, refused.output
    last = refused.output.strip().splitlines()[-1]
    assert last.startswith(f"error: run {run.id}'s checkpoint is damaged (its bytes do not")
    assert "Traceback" not in refused.output
    ws = Workspace(project)
    try:  # refused before the run was taken up again: its time, state and end as they were
        assert ws.tracker.get(run.id) == run
    finally:
        ws.close()
    checkpoint.write_bytes(kept)
    _resumes_to_the_end(project)
    assert not checkpoint.exists()  # completed: nothing resumes from it any more


def _final_runs(db: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(db, timeout=1) as c:
            return int(c.execute("SELECT count(*) FROM runs WHERE kind = 'final'").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_kill9_of_a_linear_probe_then_resume_fits_it_again(
    shared_data: Path, tmp_path: Path
) -> None:
    """A linear probe writes no checkpoint; killed, ``--resume`` fits the same run again with
    its own settings (not a new build from kennel.yaml) and the run ends ``completed``. With
    nothing to resume, ``--resume`` says so in one line instead of starting a build."""
    project = _ingested_mini(tmp_path / "probe", shared_data)
    root = str(project.root)
    nothing = runner.invoke(app, ["train", "-d", "mini", "--resume", "-C", root])
    assert nothing.exit_code == 3  # NotFoundError
    assert nothing.output.startswith("error: nothing to resume on mini@"), nothing.output
    assert len(nothing.output.strip().splitlines()) == 1
    # the best preset's probe on Lite0, a third of Lite2's work: kill -9 and resume are the same
    probe = ("train", "-d", "mini", "--preset", "best", "--arch", "efficientnet_lite0")
    probe += ("--image-size", "160", "--trials", "1")
    cmd = [sys.executable, "-m", "kennel.cli", *probe, "-C", root]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    db = project.root / ".kennel" / "kennel.db"
    deadline = time.monotonic() + 180
    while _final_runs(db) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the probe ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # in the frozen-feature pass or the fit
    proc.wait()
    ws = Workspace(project)
    try:
        [killed] = ws.tracker.runs(kind="final")
    finally:
        ws.close()
    assert killed.status == "interrupted"  # no live process holds it: not "running" for ever
    out = _cli("train", "-d", "mini", "--resume", "-C", root)
    assert out["run_id"] == killed.id and [h["epoch"] for h in out["history"]] == [1]
    assert out["params"]["arch"] == "efficientnet_lite0" and out["params"]["freeze_backbone"]
    ws = Workspace(project)
    try:
        [final] = ws.tracker.runs(kind="final")
    finally:
        ws.close()
    assert final.id == killed.id and final.status == "completed"


def test_sigterm_stops_a_pipeline_in_one_line_and_the_next_run_finishes_it(
    shared_data: Path, tmp_path: Path
) -> None:
    """``kennel pipeline run`` stopped by SIGTERM mid-training: exit 143, one line saying how to
    go on, the run ``interrupted`` (not ``running`` for ever); running it again finishes."""
    project = _ingested_mini(tmp_path / "pipe", shared_data)
    pipeline = ("pipeline", "run", "--dataset", "mini", "--trials", "1")
    proc = _training(project.root, stderr=subprocess.PIPE, command=pipeline)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: interrupted by SIGTERM; run the same kennel pipeline run"), err
    assert "Traceback" not in err
    ws = Workspace(project)
    try:
        [run] = ws.tracker.runs(kind="final")
        assert run.status == "interrupted" and run.finished_at is not None
    finally:
        ws.close()
    out = _cli(*pipeline, "-C", str(project.root))
    ws = Workspace(project)
    try:
        finals = ws.tracker.runs(kind="final")
    finally:
        ws.close()
    assert [r.status for r in finals] == ["completed"], finals
    assert out["model"]


def test_pretrained_beats_scratch(mini: Project) -> None:
    ws = Workspace(mini)
    try:
        scratch = ws.builder().build(
            "mini", BuildOptions(arch="small_cnn", epochs=3, trials=1, image_size=64)
        )
        tuned = ws.builder().build(
            "mini",
            BuildOptions(
                arch="efficientnet_lite0",
                epochs=3,
                trials=1,
                image_size=128,
                overrides={"frozen_blocks": 10, "lr": 1e-3},
            ),
        )
    finally:
        ws.close()
    assert tuned.config.arch == "efficientnet_lite0"
    assert tuned.evaluation.accuracy > scratch.evaluation.accuracy + 0.1


_KILLED_AFTER_REGISTERING = """
import os, signal, sys
import kennel.pipeline.build as build
def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 between the registration and the run's end
build.complete_run = killed
from kennel.cli.main import main
sys.argv = ["kennel", *sys.argv[1:]]
main()
"""


def test_a_run_killed_after_it_registered_registers_nothing_more_when_resumed(
    shared_data: Path, tmp_path: Path
) -> None:
    """One run, one model: resumed after a kill -9 that came after its registration, a run
    registered its model a second time (park@4 and park@5 of one run)."""
    project = _ingested_mini(tmp_path / "registered", shared_data)
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_REGISTERING, "train", "-d", "mini", "--epochs", "2",
         "-C", str(project.root)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ws = Workspace(project)
    try:
        [first] = ws.registry.versions("pets")
        [run] = ws.tracker.runs(kind="final")
        assert run.status == "interrupted" and first.run_id == run.id
    finally:
        ws.close()
    result = runner.invoke(app, ["train", "-d", "mini", "--resume", "-C", str(project.root)])
    assert result.exit_code == 0, result.output
    ws = Workspace(project)
    try:
        assert [v.version for v in ws.registry.versions("pets")] == [first.version]
        [run] = ws.tracker.runs(kind="final")
        assert run.status == "completed" and run.metrics["model"] == first.ref
    finally:
        ws.close()
