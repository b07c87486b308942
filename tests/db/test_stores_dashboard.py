"""The reads the dashboard pages through (a page of versions, runs or models; studies; an
ingest's quarantined files; one item), each on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from kennel.db import Database
from kennel.db.datasets import DatasetStore, Item
from kennel.db.ingest import IngestRecord, IngestStore
from kennel.db.registry import RegistryStore
from kennel.db.runs import RunMetric, RunStore, TrialValue


@pytest.fixture
def db(metadata_url: str) -> Iterator[Database]:
    database = Database.open(metadata_url)
    yield database
    database.dispose()


def test_dataset_versions_page_newest_first_and_count_per_dataset(db: Database) -> None:
    store = DatasetStore(db)
    assert store.version_counts() == {}
    for name in ("pets", "birds"):
        store.ensure_dataset(name)
    for n in range(5):
        store.add_version("pets", f"{n:064x}", parent_id=f"{n - 1:064x}" if n else None,
                          manifest_sha256="m" * 64, ingest_run_id=None, n_rows=n, counts={},
                          summary={}, actor="t")  # fmt: skip
    store.add_version("birds", "b" * 64, parent_id=None, manifest_sha256="m" * 64,
                      ingest_run_id=None, n_rows=1, counts={}, summary={}, actor="t")  # fmt: skip
    assert store.version_counts() == {"pets": 5, "birds": 1}
    assert [v.seq for v in store.page("pets", limit=2)] == [5, 4]
    assert [v.seq for v in store.page("pets", limit=2, offset=4)] == [1]
    assert [v.n_rows for v in store.page("pets", limit=10, offset=1)] == [3, 2, 1, 0]
    assert store.page("nothing", limit=5) == []


def test_ingest_store_pages_a_runs_records_and_finds_items(db: Database) -> None:
    DatasetStore(db).ensure_dataset("pets")
    store = IngestStore(db)
    store.start("r1", dataset="pets", source="folder:x", fingerprint="f" * 64,
                parent_version=None, files=6, actor="t")  # fmt: skip
    item = Item("a" * 64, 1234, "JPEG", "RGB", 64, 48, 100.0, 20.0, 5.0, "0" * 16)
    records = [
        IngestRecord("r1", f"f{i}.jpg", i, "cat", "ok" if i % 2 else "quarantined",
                     "a" * 64 if i % 2 else None, None if i % 2 else f"truncated: {i}", {})
        for i in range(6)
    ]  # fmt: skip
    store.save([item], records)
    assert store.item("a" * 64) == item
    assert store.item("b" * 64) is None
    assert store.known(["a" * 64, "b" * 64]) == {"a" * 64} and store.known([]) == set()
    assert store.count("r1", "quarantined") == 3 and store.count("r1", "ok") == 3
    assert store.count("r2", "quarantined") == 0
    first = store.records("r1", "quarantined", limit=2)
    assert [(r.uri, r.reason) for r in first] == [("f0.jpg", "truncated: 0"),
                                                 ("f2.jpg", "truncated: 2")]  # fmt: skip
    assert [r.uri for r in store.records("r1", "quarantined", limit=2, offset=2)] == ["f4.jpg"]


def test_run_store_pages_runs_and_summarises_studies(db: Database) -> None:
    store = RunStore(db)

    def run(kind: str, study: str | None, trial: int | None, status: str | None) -> str:
        started = store.start(kind=kind, dataset="pets", dataset_version="v" * 64, params={},
                              study=study, trial_number=trial, git_commit=None, init_from=None,
                              actor="t")  # fmt: skip
        if status is not None:
            store.finish(started.id, status, {})
        return started.id

    a = [run("trial", "s-a", i, s) for i, s in enumerate(["completed", "pruned", "completed"])]
    final_a = run("final", "s-a", None, "completed")
    b = [run("trial", "s-b", 0, "failed"), run("trial", "s-b", 1, None)]
    lone = run("final", None, None, "completed")
    live = ExitStack()
    assert live.enter_context(store.claim(b[1]))  # as the process training trial 1 holds it

    assert store.count() == 7 and store.count(study="s-a") == 4
    assert store.count(kind="trial", status="completed") == 2
    newest = store.page(limit=3)
    assert [r.id for r in newest] == [lone, b[1], b[0]]
    assert [r.id for r in store.page(limit=3, offset=3)] == [final_a, a[2], a[1]]
    assert [r.id for r in store.page(limit=10, study="s-a", kind="trial")] == a[::-1]
    assert [r.id for r in store.page(limit=10, status="pruned")] == [a[1]]

    store.log_metrics([RunMetric(a[1], e, "val_accuracy", v) for e, v in ((1, 0.4), (2, 0.6))]
                      + [RunMetric(a[0], 1, "val_accuracy", 0.7), RunMetric(a[0], 1, "lr", 9.0),
                         RunMetric(lone, 1, "val_accuracy", 1.0)])  # fmt: skip
    assert store.trial_values("s-a", "val_accuracy") == [
        TrialValue(a[0], 0, "completed", 0.7), TrialValue(a[1], 1, "pruned", 0.6),
        TrialValue(a[2], 2, "completed", None)]  # fmt: skip
    assert [(t.status, t.best) for t in store.trial_values("s-b", "val_accuracy")] == [
        ("failed", None), ("running", None)]  # fmt: skip
    assert store.trial_values("s-c", "val_accuracy") == []
    assert store.count_studies() == 2
    studies = store.studies(limit=10)
    assert [s.id for s in studies] == ["s-b", "s-a"]
    sb, sa = studies
    assert (sa.trials, sa.statuses, sa.final_run) == (
        3, {"completed": 2, "pruned": 1}, final_a)  # fmt: skip
    assert (sb.trials, sb.statuses, sb.final_run) == (2, {"failed": 1, "running": 1}, None)
    assert sa.dataset == "pets" and sa.dataset_version == "v" * 64
    assert sa.finished_at is not None and sa.finished_at >= sa.started_at
    assert [s.id for s in store.studies(limit=1, offset=1)] == ["s-a"]
    assert store.studies(limit=5, offset=2) == []
    # the process that held trial 1 is gone: the trial reads interrupted, wherever it is read
    live.close()
    assert [(t.status, t.best) for t in store.trial_values("s-b", "val_accuracy")] == [
        ("failed", None), ("interrupted", None)]  # fmt: skip
    assert store.studies(limit=1)[0].statuses == {"failed": 1, "interrupted": 1}
    assert [r.id for r in store.page(limit=5, status="interrupted")] == [b[1]]
    assert store.count(status="interrupted") == 1 and store.count(status="running") == 0


def test_registry_pages_versions_newest_first_with_aliases(db: Database) -> None:
    store = RegistryStore(db)
    for n in range(4):
        store.add_version("pets", lambda v: {"model.onnx": f"{v:064x}"}, run_id=None,
                          dataset=None, dataset_version=None, metrics={"accuracy": n / 10},
                          gates_passed=True, gate_reasons=[], actor="t")  # fmt: skip
    store.move_alias("pets", "champion", 3, actor="t", reason="", kind="champion", token=None)
    assert store.count("pets") == 4 and store.count("other") == 0
    page = store.page("pets", limit=2)
    assert [(m.version, m.aliases) for m in page] == [(4, ()), (3, ("champion",))]
    assert [m.version for m in store.page("pets", limit=2, offset=2)] == [2, 1]
    assert store.page("pets", limit=2, offset=4) == []
