"""Distributed hyperparameter search on the real PostgreSQL: `kennel tune worker` processes on
one shared study run exactly its trials, each once, each a tracked run; a worker killed with
SIGKILL leaves a trial that is failed after the grace period and run again by the other; bad
stores and studies are one line each and write nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import Project
from kennel.datasets.synth import generate
from kennel.db.studies import creating, schema_of, shown, storage_url
from kennel.errors import ConfigError
from kennel.pipeline.build import BuildOptions
from kennel.train.study_records import StudyStatus
from kennel.wiring import Workspace
from tests.conftest import PG_BASE, TINY_TRAIN, make_project

pytestmark = pytest.mark.postgres
runner = CliRunner()
SEARCH = {
    "method": "random",
    "heartbeat_s": 1,
    "grace_s": 2,
    "space": {"lr": {"low": 0.001, "high": 0.01, "log": True}},
}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    generate(root, 160, seed=7)
    return root


def _ingested(root: Path, pg_url: str, lake: Path, train: dict[str, object]) -> Project:
    """A project whose metadata (and so its shared studies) live in PostgreSQL, with the lake
    ingested as ``park``."""
    project = make_project(
        root, sections={"store": {"metadata_url": pg_url}, "train": train}, workers=1
    )
    ws = Workspace(project)
    try:
        ws.ingestor().run(ws.source(str(lake)), "park")
    finally:
        ws.close()
    return project


def _drop_studies(pg_url: str) -> None:
    admin = create_engine(PG_BASE)
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema_of(pg_url)}_optuna" CASCADE'))
    admin.dispose()


@pytest.fixture
def project(tmp_path: Path, pg_url: str, lake: Path) -> Iterator[Project]:
    # one thread a worker: two on two cores, each busy-waiting for the other's, crawl
    yield _ingested(tmp_path / "p", pg_url, lake, {**TINY_TRAIN, "threads": 1, "search": SEARCH})
    _drop_studies(pg_url)


def _cli(*args: str) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _worker(project: Project, study: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "kennel.cli", "tune", "worker", "--study", study]
    return subprocess.Popen(
        [*cmd, "-C", str(project.root), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> dict:  # type: ignore[type-arg]
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-2000:]
    return json.loads(out)  # type: ignore[no-any-return]


def _status(project: Project, study: str) -> StudyStatus:
    ws = Workspace(project)
    try:
        return ws.studies.status(study)
    finally:
        ws.close()


def _runs_by_trial(project: Project, study: str) -> dict[int, list[str]]:
    ws = Workspace(project)
    try:
        runs = ws.tracker.runs(study=study, kind="trial")
    finally:
        ws.close()
    out: dict[int, list[str]] = {}
    for run in runs:
        assert run.trial_number is not None
        out.setdefault(run.trial_number, []).append(run.status)
    return out


def test_two_workers_run_each_trial_once_and_the_build_trains_the_best(project: Project) -> None:
    root = str(project.root)
    created = _cli("tune", "start", "park", "--trials", "4", "--study", "s1", "-C", root)
    assert created["counts"]["waiting"] == 4 and not created["finished"]
    again = _cli("tune", "start", "park", "--trials", "4", "--study", "s1", "-C", root)
    assert len(again["trials"]) == 4  # idempotent: nothing added

    workers = [_worker(project, "s1"), _worker(project, "s1")]
    ran = [_finish(w)["ran"] for w in workers]

    status = _status(project, "s1")
    numbers = [t.number for t in status.trials]
    assert sorted(numbers) == [0, 1, 2, 3] and sum(ran) == 4
    assert status.finished and status.count("completed", "pruned") == 4
    assert status.count("failed") == 0
    assert len({t.worker for t in status.trials}) == sum(r > 0 for r in ran)
    # every trial a tracked run, exactly one, whose status is the trial's
    runs = _runs_by_trial(project, "s1")
    assert {n: [t.status] for n, t in ((t.number, t) for t in status.trials)} == runs
    assert len({t.run_id for t in status.trials}) == 4

    # the build trains and registers the study's best trial
    ws = Workspace(project)
    try:
        result = ws.builder().build("park", BuildOptions(study="s1"))
        final = ws.tracker.get(result.run_id)
    finally:
        ws.close()
    assert status.best is not None
    assert result.study == "s1" and final.study == "s1" and final.kind == "final"
    assert result.config.lr == status.best.params["lr"]
    assert sorted(t.trial for t in result.trials) == [0, 1, 2, 3]
    assert result.model.version == 1
    # a pruned trial has no accuracy (it was stopped), not 0.0
    by_number = {t.number: t for t in status.trials}
    for summary in result.trials:
        done = by_number[summary.trial].status == "completed"
        assert (summary.val_accuracy is not None) == done, summary
    ws = Workspace(project)
    try:
        for run in ws.tracker.runs(study="s1", kind="trial"):
            assert ("val_accuracy" in run.metrics) == (run.status == "completed"), run
    finally:
        ws.close()


def test_a_killed_workers_trial_is_failed_and_run_again(project: Project) -> None:
    root = str(project.root)
    _cli("tune", "start", "park", "--trials", "4", "--study", "s2", "-C", root)
    workers = {p.pid: p for p in (_worker(project, "s2"), _worker(project, "s2"))}
    ws = Workspace(project)
    victim, deadline = None, time.monotonic() + 60
    try:
        while victim is None and time.monotonic() < deadline:
            for trial in ws.studies.status("s2").trials:
                if trial.status == "running" and trial.run_id and ws.tracker.epochs(trial.run_id):
                    victim = trial  # one epoch in: kill its worker mid-trial
                    break
            else:
                time.sleep(0.05)
    finally:
        ws.close()
    assert victim is not None and victim.worker is not None, "no trial ran"
    pid = int(victim.worker.rsplit(":", 1)[1])
    os.killpg(pid, signal.SIGKILL)
    workers.pop(pid).communicate()
    (survivor,) = workers.values()
    _finish(survivor, timeout=90)

    status = _status(project, "s2")
    by_number = {t.number: t for t in status.trials}
    assert len(by_number) == len(status.trials) == 5  # four slots and one retry
    assert by_number[victim.number].status == "failed"
    (retry,) = [t for t in status.trials if t.retry_of is not None]
    assert retry.retry_of == victim.number and retry.params == victim.params
    assert retry.status in ("completed", "pruned")
    assert status.finished and status.count("completed", "pruned") == 4
    runs = _runs_by_trial(project, "s2")
    assert runs[victim.number] == ["failed"]
    assert runs == {t.number: [t.status] for t in status.trials}


def test_a_worker_silent_past_the_grace_period_loses_its_trial(project: Project) -> None:
    """SIGSTOP, not SIGKILL: the worker comes back after its trial was failed and run again by
    another; its own result is dropped and it goes on."""
    _cli("tune", "start", "park", "--trials", "2", "--study", "s5", "-C", str(project.root))
    first = _worker(project, "s5")
    second: subprocess.Popen[bytes] | None = None
    ws = Workspace(project)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            running = [t for t in ws.studies.status("s5").trials if t.status == "running"]
            if running and running[0].run_id and ws.tracker.epochs(running[0].run_id):
                break
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGSTOP)
        second = _worker(project, "s5")
        # The second worker fails the silent trial when it asks for one: after it has started
        # (imports take seconds on a loaded machine) and the 2 s grace period has passed.
        failed_by = time.monotonic() + 120
        while True:
            exited = second.poll() is not None  # before the status: a late exit is no crash
            if any(t.status == "failed" for t in ws.studies.status("s5").trials):
                break
            assert not exited, second.communicate()[1].decode()[-2000:]
            assert time.monotonic() < failed_by, "the stopped worker's trial was not failed"
            time.sleep(0.2)
    except BaseException:
        for proc in (first, second):  # leave no worker behind a failed check
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        raise
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGCONT)
        ws.close()
    out, err = first.communicate(timeout=90)
    assert first.returncode == 0, err.decode()[-2000:]
    assert json.loads(out)["finished"]
    # one line says what happened to its result; no traceback of Optuna's refusal
    assert "Traceback" not in err.decode() and "UpdateFinishedTrialError" not in err.decode()
    assert "already finished by another worker" in err.decode(), err.decode()[-2000:]
    _finish(second, timeout=90)
    status = _status(project, "s5")
    (lost,) = [t for t in status.trials if t.status == "failed"]
    (retry,) = [t for t in status.trials if t.retry_of == lost.number]
    assert retry.status in ("completed", "pruned") and retry.params == lost.params
    assert status.finished and status.count("completed", "pruned") == 2
    assert _runs_by_trial(project, "s5") == {t.number: [t.status] for t in status.trials}


def _error(*args: str, code: int) -> str:
    result = runner.invoke(app, list(args))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_unreachable_store_unknown_study_and_sqlite_are_one_line(
    project: Project, tmp_path: Path
) -> None:
    root = str(project.root)
    # an unknown dataset writes no study at all
    _error("tune", "start", "nope", "-C", root, code=3)
    ws = Workspace(project)
    try:
        assert ws.studies.probe() is False
    finally:
        ws.close()
    line = _error("tune", "worker", "--study", "s3", "-C", root, code=3)
    assert "no study was ever started" in line and "tune start" in line
    _cli("tune", "start", "park", "--trials", "1", "--study", "s3", "-C", root)
    line = _error("tune", "status", "--study", "s4", "-C", root, code=3)
    assert "'s4' not found" in line
    assert "postgresql" not in line and "search_path" not in line  # host:port/name only
    line = _error("tune", "start", "park", "--study", "s3", "--search", "tpe", "-C", root, code=4)
    assert "'s3' already searches park@" in line

    long = "s" * 600
    for args in (("start", "park", "--study", long), ("status", "--study", long)):
        line = _error("tune", *args, "-C", root, code=2)
        assert "600 characters" in line and len(line) < 200
    spaced = runner.invoke(app, ["tune", "start", "park", "--trials", "1", "-s", "a b", "-C", root])
    assert spaced.exit_code == 0, spaced.output
    assert "kennel tune worker --study 'a b'" in spaced.stdout  # a hint that pastes as it is

    down = make_project(
        tmp_path / "down",
        sections={"store": {"metadata_url": "postgresql+psycopg://kennel:sekret@127.0.0.1:9/x"}},
    )
    for args in (("worker", "--study", "s3"), ("status", "--study", "s3"), ("start", "park")):
        line = _error("tune", *args, "-C", str(down.root), code=10)
        assert "127.0.0.1:9/x" in line and "sekret" not in line and "kennel@" not in line

    local = make_project(tmp_path / "local")
    line = _error("tune", "worker", "--study", "s3", "-C", str(local.root), code=2)
    assert "needs PostgreSQL" in line


def test_studies_get_a_schema_of_their_own_and_never_sqlite() -> None:
    pinned = storage_url(f"{PG_BASE}?options=-csearch_path%3Dt_abc")
    assert schema_of(pinned) == "t_abc_optuna"
    plain = storage_url("postgresql+psycopg://kennel:sekret@db:5432/kennel")
    assert schema_of(plain) == "kennel_optuna" and "sekret" in plain  # it must connect
    assert shown(plain) == "db:5432/kennel"  # as other errors name a database
    other = "postgresql+psycopg://db/optuna"
    assert storage_url("sqlite:///x.db", other) == other
    for url, override in (("sqlite:///x.db", None), (PG_BASE, "sqlite:///o.db")):
        with pytest.raises(ConfigError, match="needs PostgreSQL"):
            storage_url(url, override)


def test_an_interrupted_creation_is_finished_with_exactly_the_trials_asked(
    project: Project,
) -> None:
    """A study left without its spec (creation interrupted) with more queued trials than the
    next `tune start` asks for is trimmed to exactly that many; --trials is bounded."""
    import optuna

    root = str(project.root)
    line = _error("tune", "start", "park", "--trials", "10001", "-s", "big", "-C", root, code=2)
    assert "--trials 10001" in line and "10,000" in line
    ws = Workspace(project)
    try:
        assert ws.studies.probe() is False  # nothing written
        with creating(ws.studies.url):
            pass
        storage = optuna.storages.RDBStorage(ws.studies.url)
        study = optuna.create_study(study_name="cut", storage=storage)
        for _ in range(7):
            study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING))
        storage.engine.dispose()
    finally:
        ws.close()
    line = _error("tune", "status", "--study", "cut", "-C", root, code=3)
    assert "not fully created" in line
    created = _cli("tune", "start", "park", "--trials", "3", "--study", "cut", "-C", root)
    assert created["counts"]["waiting"] == 3 and len(created["trials"]) == 3
    assert [t.number for t in _status(project, "cut").trials] == [0, 1, 2]


def test_a_probe_study_searches_only_what_a_probe_uses(
    pg_url: str, lake: Path, tmp_path: Path
) -> None:
    """A wholly frozen Lite model fits its classifier by itself: a study over lr and augment
    would run identical trials and crown settings that changed nothing."""
    lr = {"low": 0.001, "high": 0.01, "log": True}
    search = {**SEARCH, "space": {"lr": lr, "augment": {"values": [0.0, 0.3]}}}
    probe_train = {"arch": "efficientnet_lite0", "freeze_backbone": True, "search": search}
    made = _ingested(tmp_path / "p", pg_url, lake, probe_train)
    root = str(made.root)
    try:
        line = _error("tune", "start", "park", "--study", "p1", "-C", root, code=2)
        assert "nothing to tune" in line and "augment, lr" in line
        with pytest.raises(Exception, match="no study was ever started"):
            _status(made, "p1")  # nothing was written
        config = yaml.safe_load((made.root / "kennel.yaml").read_text())
        config["train"]["search"]["space"] = {"lr": lr, "image_size": {"values": [64, 96]}}
        (made.root / "kennel.yaml").write_text(yaml.safe_dump(config))
        result = runner.invoke(
            app, ["tune", "start", "park", "--trials", "2", "-s", "p2", "-C", root]
        )
        assert result.exit_code == 0, result.output
        assert "random over image_size, 2 trials" in result.stdout
        assert set(_status(made, "p2").spec.config.search.space) == {"image_size"}
    finally:
        _drop_studies(pg_url)
