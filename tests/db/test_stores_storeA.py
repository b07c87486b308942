"""The dataset, ingest, run and registry stores, each on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import fields, replace
from datetime import datetime
from typing import Any, TypeVar

import pytest
from sqlalchemy import text

from kennel.db import Database, aware
from kennel.db.datasets import DatasetStore, DatasetVersion, Item
from kennel.db.disputes import Offer
from kennel.db.ingest import ACCEPTED, IngestRecord, IngestStore
from kennel.db.ingest_runs import IngestRun
from kennel.db.registry import AliasEvent, ModelVersion, RegistryStore
from kennel.db.runs import Run, RunMetric, RunStore
from kennel.db.schema import ModelVersionRow
from kennel.errors import MetadataError, NotFoundError

T = TypeVar("T")


def utc(entity: T) -> T:
    """``entity`` with its times UTC-aware: read back from SQLite they are naive (as before the
    stores; callers that need aware times call ``kennel.db.aware``)."""
    times = {
        f.name: aware(getattr(entity, f.name))
        for f in fields(entity)  # type: ignore[arg-type]
        if isinstance(getattr(entity, f.name), datetime)
    }
    return replace(entity, **times)  # type: ignore[type-var]


@pytest.fixture
def db(metadata_url: str) -> Iterator[Database]:
    database = Database.open(metadata_url)
    yield database
    database.dispose()


def _audit(db: Database) -> list[tuple[str, str]]:
    with db.session() as s:
        rows = s.execute(text("SELECT action, subject FROM audit_log ORDER BY seq")).all()
    return [(action, subject) for action, subject in rows]


def _item(n: int) -> Item:
    return Item(f"{n:064x}", 100 + n, "JPEG", "RGB", 32, 24, 1.5, 2.5, 3.5, f"{n:016x}")


def _add_version(
    store: DatasetStore, dataset: str, vid: str, parent: str | None = None
) -> DatasetVersion:
    return store.add_version(
        dataset,
        vid,
        parent_id=parent,
        manifest_sha256="m" * 64,
        ingest_run_id=None,
        n_rows=3,
        counts={"cat": {"train": 2, "test": 1}},
        summary={"added": 3},
        actor="tester",
    )


# -- datasets -------------------------------------------------------------------------------


def test_dataset_store_round_trips_versions_in_sequence(db: Database) -> None:
    store = DatasetStore(db)
    store.ensure_dataset("pets")
    store.ensure_dataset("pets")  # idempotent
    store.ensure_dataset("birds")
    assert store.names() == ["birds", "pets"]
    assert store.latest("pets") is None
    assert store.names_with_versions() == []

    v1 = _add_version(store, "pets", "ab" * 32)
    v2 = _add_version(store, "pets", "cd" * 32, parent=v1.id)
    b1 = _add_version(store, "birds", "ef" * 32)
    assert isinstance(v1, DatasetVersion)
    assert (v1.seq, v2.seq, b1.seq) == (1, 2, 1)
    assert v2.parent_id == v1.id and v2.n_rows == 3
    assert v2.counts == {"cat": {"train": 2, "test": 1}} and v2.summary == {"added": 3}
    assert isinstance(v2.created_at, datetime)

    assert utc(store.get("pets", v2.id)) == v2
    assert store.get("birds", v2.id) is None
    assert utc(store.latest("pets")) == v2
    assert [utc(v) for v in store.versions("pets")] == [v1, v2]
    assert [v.ref for v in store.versions()] == [b1.ref, v1.ref, v2.ref]  # dataset, then seq
    assert sorted(store.names_with_versions()) == ["birds", "pets"]
    assert [utc(v) for v in store.with_seq("pets", 2)] == [v2]
    assert store.with_seq("pets", 3) == []
    assert [utc(v) for v in store.with_id_prefix("pets", "abab")] == [v1]
    assert store.with_id_prefix("pets", "ef") == []
    assert store.with_id_prefix("pets", "a_") == store.with_id_prefix("pets", "%") == []  # literal
    assert _audit(db) == [
        ("dataset.version", f"pets@{v1.id}"),
        ("dataset.version", f"pets@{v2.id}"),
        ("dataset.version", f"birds@{b1.id}"),
    ]


def test_dataset_version_ids_are_unique_per_dataset(db: Database) -> None:
    store = DatasetStore(db)
    store.ensure_dataset("pets")
    _add_version(store, "pets", "ab" * 32)
    with pytest.raises(MetadataError):  # built on the newest version, but its id is taken
        _add_version(store, "pets", "ab" * 32, parent="ab" * 32)
    assert len(store.versions("pets")) == 1
    assert len(_audit(db)) == 1  # the failed version left no audit entry behind
    with pytest.raises(MetadataError):  # a version needs its dataset
        _add_version(store, "nobody", "cd" * 32)


# -- ingest runs ----------------------------------------------------------------------------


def _record(run_id: str, seq: int, status: str = "ok", sha: str | None = None) -> IngestRecord:
    return IngestRecord(run_id, f"/lake/{seq}.jpg", seq, "cat", status, sha, None, {"k": "v"})


def _lake_run(store: IngestStore, *, files: int) -> IngestRun:
    """Run r1: an ingest of folder:/lake into pets."""
    return store.start(
        "r1",
        dataset="pets",
        source="folder:/lake",
        fingerprint="f" * 64,
        parent_version=None,
        files=files,
        actor="tester",
    )


def test_ingest_store_checkpoints_records_and_items(db: Database) -> None:
    DatasetStore(db).ensure_dataset("pets")
    store = IngestStore(db)
    run = _lake_run(store, files=4)
    assert (run.id, run.status, run.finished_at) == ("r1", "running", None)
    assert run.summary == {"files": 4}
    assert utc(store.get("r1")) == run
    assert store.get("r2") is None
    assert utc(store.running("f" * 64)) == run
    assert store.running("0" * 64) is None

    first = [_record("r1", 2, sha=_item(2).sha256), _record("r1", 0, sha=_item(1).sha256)]
    store.save([_item(1), _item(2)], first)
    # a resumed chunk may repeat what is stored already: kept as it was, no error
    store.save(
        [_item(1), _item(3)],
        [
            _record("r1", 0, sha=_item(1).sha256),
            _record("r1", 1, sha=_item(3).sha256),
            IngestRecord("r1", "/lake/3.jpg", 3, None, "quarantined", None, "no label", {}),
        ],
    )
    assert store.recorded_uris("r1") == {f"/lake/{i}.jpg" for i in range(4)}
    assert store.recorded_uris("r2") == set()

    accepted = store.accepted("r1", "ok")
    assert accepted["uri"] == [f"/lake/{n}.jpg" for n in (0, 1, 2)]  # file order
    assert accepted["sha256"] == [_item(n).sha256 for n in (1, 3, 2)]
    assert accepted["label"] == ["cat"] * 3 and accepted["attrs"] == [{"k": "v"}] * 3
    assert accepted["phash"] == [_item(n).phash for n in (1, 3, 2)]
    assert (accepted["width"][0], accepted["height"][0]) == (32, 24)
    assert (accepted["brightness"][0], accepted["contrast"][0]) == (1.5, 2.5)
    assert accepted["sharpness"] == [3.5] * 3

    bad = store.mark("r1", [("/lake/1.jpg", "label conflict: x")], "quarantined")
    assert [(r.uri, r.reason) for r in bad] == [
        ("/lake/1.jpg", "label conflict: x"),
        ("/lake/3.jpg", "no label"),
    ]
    assert store.accepted("r1", "ok")["uri"] == ["/lake/0.jpg", "/lake/2.jpg"]
    assert store.accepted("r2", "ok") == {name: [] for name in ACCEPTED}

    closed = store.close("r1", "done", "v" * 64, {"added": 2, "quarantined": {"label": 1}})
    assert closed.status == "done" and closed.version_id == "v" * 64
    assert closed.summary == {"files": 4, "added": 2, "quarantined": {"label": 1}}
    assert closed.finished_at is not None
    assert utc(store.get("r1")) == utc(closed)
    assert store.running("f" * 64) is None  # finished runs are not resumed
    assert _audit(db) == [("ingest.start", "pets:r1"), ("ingest.done", "pets:r1")]


def test_label_disputes_gather_labels_and_keep_their_settlement(db: Database) -> None:
    DatasetStore(db).ensure_dataset("pets")
    store = IngestStore(db)
    _lake_run(store, files=1)
    store.save([_item(1)], [_record("r1", 0, sha=_item(1).sha256)])
    assert store.content_of("pets", "/lake/0.jpg") == _item(1).sha256
    assert store.content_of("pets", "/lake/9.jpg") is None
    assert store.content_of("dogs", "/lake/0.jpg") is None  # another dataset's file

    sha = "a" * 64
    both = Offer(frozenset({"dog", "cat"}), {"/lake/a.jpg": "cat", "/lake/b.jpg": "dog"})
    store.dispute("pets", {sha: both}, "r1", actor="tester")
    fox = Offer(frozenset({"fox"}), {"/lake/f.jpg": "fox"})
    store.dispute("pets", {sha: fox, "b" * 64: both}, "r2", actor="tester")
    store.dispute("pets", {}, "r3", actor="tester")  # nothing found: nothing written
    store.dispute("pets", {sha: both}, "r4", actor="tester")  # nothing new: nothing written
    found = store.disputes("pets")
    assert set(found) == {sha, "b" * 64}
    assert found[sha].labels == ("cat", "dog", "fox") and found[sha].run_id == "r1"
    assert found[sha].files == {"/lake/a.jpg": "cat", "/lake/b.jpg": "dog", "/lake/f.jpg": "fox"}
    assert found[sha].settled_label is None and store.disputes("dogs") == {}
    assert store.content_of("pets", "/lake/f.jpg") == sha  # named by the dispute alone
    assert [a for a, _ in _audit(db)].count("dataset.dispute") == 3  # new, grown, new

    assert store.settle("pets", "c" * 64, "cat", actor="quinn") is None
    settled = store.settle("pets", sha, "dog", actor="quinn")
    assert settled is not None and (settled.settled_label, settled.settled_by) == ("dog", "quinn")
    store.dispute("pets", {sha: both}, "r5", actor="tester")  # offered again: still settled
    again = store.disputes("pets")[sha]
    assert (again.settled_label, again.labels) == ("dog", ("cat", "dog", "fox"))
    assert aware(again.settled_at) is not None
    assert _audit(db)[-1] == ("dataset.settle", f"pets:{sha}")


def test_ingest_store_resumes_the_newest_running_run_and_ids_are_unique(db: Database) -> None:
    DatasetStore(db).ensure_dataset("pets")
    store = IngestStore(db)

    def start(run_id: str, dataset: str = "pets") -> None:
        store.start(
            run_id,
            dataset=dataset,
            source="s",
            fingerprint="f" * 64,
            parent_version=None,
            files=1,
            actor="t",
        )

    start("old")
    start("new")
    running = store.running("f" * 64)
    assert running is not None and running.id == "new"
    with pytest.raises(MetadataError):
        start("new")
    with pytest.raises(MetadataError):  # a run needs its dataset
        start("x", dataset="nobody")
    assert [a for a, _subject in _audit(db)] == ["ingest.start", "ingest.start"]


# -- runs -----------------------------------------------------------------------------------


@pytest.fixture
def claims() -> Iterator[ExitStack]:
    """The runs a test starts, held as the process running them holds them."""
    with ExitStack() as stack:
        yield stack


def _start(store: RunStore, claims: ExitStack, **overrides: Any) -> Run:
    run_id = uuid.uuid4().hex
    assert claims.enter_context(store.claim(run_id))
    fields: dict[str, Any] = {
        "run_id": run_id,
        "kind": "trial",
        "dataset": "pets",
        "dataset_version": "v1",
        "params": {"lr": 0.01},
        "study": "s1",
        "trial_number": 0,
        "git_commit": None,
        "init_from": None,
        "actor": "tester",
    }
    return store.start(**{**fields, **overrides})


def test_run_store_round_trips_runs_and_metrics(db: Database, claims: ExitStack) -> None:
    store = RunStore(db)
    trial = _start(store, claims)
    final = _start(store, claims, kind="final", study=None, trial_number=None,
                   dataset_version="v2")  # fmt: skip
    assert trial.id != final.id and len(trial.id) == 32
    assert (trial.status, trial.metrics, trial.finished_at, trial.duration_s) == (
        "running",
        {},
        None,
        None,
    )
    assert utc(store.get(trial.id)) == trial
    assert store.get("missing") is None

    store.log_metrics([RunMetric(trial.id, 1, "val_loss", 0.5), RunMetric(trial.id, 0, "lr", 0.1)])
    store.log_metrics(
        [RunMetric(trial.id, 0, "val_loss", 0.9), RunMetric(trial.id, 1, "val_loss", 0.4)]
    )  # epoch 1's val_loss replaced, not duplicated
    assert store.metrics(trial.id) == [
        RunMetric(trial.id, 0, "lr", 0.1),
        RunMetric(trial.id, 0, "val_loss", 0.9),
        RunMetric(trial.id, 1, "val_loss", 0.4),
    ]
    assert store.metrics(final.id) == []

    done = store.finish(trial.id, "completed", {"accuracy": 0.75})
    assert done.status == "completed" and done.metrics == {"accuracy": 0.75}
    assert done.finished_at is not None and done.duration_s is not None and done.duration_s >= 0
    assert store.finish(trial.id, "completed", {"f1": 0.7}).metrics == {
        "accuracy": 0.75,
        "f1": 0.7,
    }

    assert [r.id for r in store.runs()] == [trial.id, final.id]  # by start time
    assert [r.id for r in store.runs(study="s1")] == [trial.id]
    assert [r.id for r in store.runs(kind="final")] == [final.id]
    assert [r.id for r in store.runs(dataset_version="v2")] == [final.id]
    assert [r.id for r in store.runs(status="completed")] == [trial.id]
    assert store.runs(kind="final", status="completed") == []
    assert _audit(db) == [
        ("run.start.trial", trial.id),
        ("run.start.final", final.id),
        ("run.completed", trial.id),
        ("run.completed", trial.id),
    ]


def test_run_metrics_need_their_run(db: Database) -> None:
    with pytest.raises(MetadataError):
        RunStore(db).log_metrics([RunMetric("missing", 0, "lr", 0.1)])


# -- registry -------------------------------------------------------------------------------


def _version(store: RegistryStore, name: str = "pets", **overrides: Any) -> ModelVersion:
    fields: dict[str, Any] = {
        "run_id": None,
        "dataset": "d",
        "dataset_version": "v",
        "metrics": {"accuracy": 0.9},
        "gates_passed": True,
        "gate_reasons": [],
        "actor": "tester",
    }
    return store.add_version(name, lambda v: {"model.onnx": f"{v:064x}"}, **{**fields, **overrides})


def test_registry_store_numbers_versions_and_moves_aliases(db: Database) -> None:
    store = RegistryStore(db)
    assert store.latest_version("pets") is None and store.names() == []
    v1 = _version(store)
    v2 = _version(store, gates_passed=False, gate_reasons=["accuracy too low"])
    other = _version(store, "birds")
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    assert v1.files == {"model.onnx": f"{1:064x}"} and v2.files == {"model.onnx": f"{2:064x}"}
    assert v2.gate_reasons == ["accuracy too low"] and not v2.gates_passed
    assert store.latest_version("pets") == 2
    assert sorted(store.names()) == ["birds", "pets"]
    assert utc(store.get("pets", 1)) == v1
    assert store.get("pets", 3) is None

    moved = store.move_alias(
        "pets", "champion", 1, actor="a", reason="first", kind="champion", token="t1"
    )
    assert moved == AliasEvent("pets", "champion", None, 1, "a", "first", moved.at, "champion")
    store.move_alias("pets", "production", 2, actor="b", reason="ship", kind="set", token=None)
    store.move_alias("pets", "champion", 2, actor="b", reason="better", kind="set", token=None)
    assert store.alias_target("pets", "champion") == 2
    assert store.alias_target("pets", "nope") is None
    assert sorted(store.alias_names("pets")) == ["champion", "production"]
    got = store.get("pets", 2)
    assert got is not None and got.aliases == ("champion", "production")  # sorted
    assert [(m.ref, m.aliases) for m in store.versions()] == [
        ("birds@1", ()),
        ("pets@1", ()),
        ("pets@2", ("champion", "production")),
    ]
    assert [m.version for m in store.versions("pets")] == [1, 2]

    store.move_alias("pets", "champion", None, actor="c", reason="drop", kind="set", token=None)
    assert store.alias_target("pets", "champion") is None
    history = store.alias_history("pets")
    assert [(e.alias, e.from_version, e.to_version, e.kind) for e in history] == [
        ("champion", None, 1, "champion"),
        ("production", None, 2, "set"),
        ("champion", 1, 2, "set"),
        ("champion", 2, None, "set"),
    ]
    assert [e.reason for e in store.alias_history("pets", "production")] == ["ship"]
    assert store.alias_history("birds") == []
    assert [a for a in _audit(db) if a[0] == "model.register"] == [
        ("model.register", "pets@1"),
        ("model.register", "pets@2"),
        ("model.register", "birds@1"),
    ]
    assert [a for a in _audit(db) if a[0] == "alias.move"] == [
        ("alias.move", "pets@champion"),
        ("alias.move", "pets@production"),
        ("alias.move", "pets@champion"),
        ("alias.move", "pets@champion"),
    ]


def test_an_alias_needs_an_existing_version(db: Database) -> None:
    store = RegistryStore(db)
    _version(store)
    with pytest.raises(NotFoundError, match="pets@5"):
        store.move_alias("pets", "prod", 5, actor="a", reason="r", kind="set", token=None)
    assert store.alias_history("pets") == []  # nothing recorded for a refused move


def test_a_taken_version_number_is_retried_with_the_next(db: Database) -> None:
    store = RegistryStore(db)
    asked: list[int] = []

    def files_for(version: int) -> dict[str, str]:
        asked.append(version)
        if len(asked) == 1:  # another writer takes this number first (past the lock)
            with db.session() as s:
                s.add(
                    ModelVersionRow(
                        name="pets",
                        version=version,
                        files={},
                        metrics={},
                        gates_passed=True,
                        gate_reasons={},
                        created_at=datetime.now().astimezone(),
                        created_by="other",
                    )
                )
        return {"model.onnx": f"{version:064x}"}

    model = store.add_version(
        "pets",
        files_for,
        run_id=None,
        dataset=None,
        dataset_version=None,
        metrics={},
        gates_passed=True,
        gate_reasons=[],
        actor="tester",
    )
    assert asked == [1, 2]
    assert model.version == 2 and model.files == {"model.onnx": f"{2:064x}"}
    assert [(m.version, m.created_by) for m in store.versions("pets")] == [
        (1, "other"),
        (2, "tester"),
    ]
