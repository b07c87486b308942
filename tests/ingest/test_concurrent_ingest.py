"""Two ingests into one dataset at once both land, one after the other: the second to commit
is built again on the first's version (issue #12: both read the same parent, so the second
version silently left out what the first had added)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kennel.db import Database
from kennel.db.datasets import DatasetStore
from kennel.errors import HeadMovedError, StateError
from kennel.ingest.run import IngestReport
from kennel.progress import Event
from kennel.wiring import Workspace
from tests.conftest import make_project
from tests.helpers import labelled_jpegs, write_tree


def test_concurrent_ingests_chain_their_versions(tmp_path: Path, metadata_url: str) -> None:
    project = make_project(
        tmp_path / "p", sections={"store": {"metadata_url": metadata_url}}, workers=1
    )
    sources = {
        name: str(write_tree(tmp_path / name, labelled_jpegs(n, seed=seed)))
        for name, n, seed in (("base", 6, 1), ("a", 5, 2), ("b", 4, 3))
    }
    # each ingest has its own engine and connections, as two `kennel data ingest` would
    workspaces = [Workspace(project) for _ in range(3)]
    for ws in workspaces:
        ws.db  # noqa: B018 - open (and migrate) here, not in the threads
    first = workspaces[0].ingestor().run(workspaces[0].source(sources["base"]), "park")
    # both have read the parent (their run started) before either may go on to commit
    started = threading.Barrier(2, timeout=60)
    reports: dict[str, IngestReport] = {}
    failures: list[BaseException] = []

    def ingest(ws: Workspace, name: str) -> None:
        waited = False

        def progress(_event: Event) -> None:
            nonlocal waited
            if not waited:
                waited = True
                started.wait()

        try:
            reports[name] = ws.ingestor().run(ws.source(sources[name]), "park", progress=progress)
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=ingest, args=(ws, name))
        for ws, name in zip(workspaces[1:], ("a", "b"), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        versions = workspaces[0].catalog.versions("park")
        last_rows = workspaces[0].catalog.rows(versions[-1])
    finally:
        for ws in workspaces:
            ws.close()
    assert failures == []
    assert [v.seq for v in versions] == [1, 2, 3]
    assert versions[0].id == first.version.id
    assert versions[1].parent_id == versions[0].id  # whichever committed first
    assert versions[2].parent_id == versions[1].id  # the other, rebuilt on it
    assert {versions[1].id, versions[2].id} == {r.version.id for r in reports.values()}
    assert all(r.created for r in reports.values())
    assert len(last_rows) == 6 + 5 + 4  # nothing lost
    assert {r.added for r in reports.values()} == {5, 4}


def test_a_version_built_on_an_old_head_is_refused(metadata_url: str) -> None:
    db = Database.open(metadata_url)
    store = DatasetStore(db)
    store.ensure_dataset("park")

    def add(version_id: str, parent: str | None) -> None:
        store.add_version(
            "park", version_id, parent_id=parent, manifest_sha256="0" * 64, ingest_run_id=None,
            n_rows=0, counts={}, summary={}, actor="test",
        )  # fmt: skip

    try:
        add("a" * 64, None)
        with pytest.raises(HeadMovedError) as refused:
            add("b" * 64, None)  # built when the dataset had no version
        assert refused.value.head == "a" * 64
        add("b" * 64, "a" * 64)
        with pytest.raises(HeadMovedError, match="newest version is b"):
            add("c" * 64, "a" * 64)
        assert [(v.seq, v.parent_id) for v in store.versions("park")] == [
            (1, None), (2, "a" * 64)
        ]  # fmt: skip
    finally:
        db.dispose()


def test_the_same_ingest_started_twice_runs_once(tmp_path: Path, metadata_url: str) -> None:
    """A second ingest of the same files into the same dataset, while the first is live, is
    refused (it used to "resume" the live run and do all its work again); once the first has
    finished, the same command ingests again (here: unchanged)."""
    project = make_project(
        tmp_path / "p", sections={"store": {"metadata_url": metadata_url}}, workers=1
    )
    lake = str(write_tree(tmp_path / "lake", labelled_jpegs(6, seed=4)))
    workspaces = [Workspace(project) for _ in range(2)]
    for ws in workspaces:
        ws.db  # noqa: B018 - open (and migrate) here, not in the thread
    inside, release = threading.Event(), threading.Event()
    reports: list[IngestReport] = []

    def hold(_event: Event) -> None:
        inside.set()
        assert release.wait(60)

    thread = threading.Thread(
        target=lambda: reports.append(
            workspaces[0].ingestor().run(workspaces[0].source(lake), "park", progress=hold)
        )
    )
    thread.start()
    try:
        assert inside.wait(60)
        with pytest.raises(StateError, match=r"same files into 'park' is running now \(run \w+\)"):
            workspaces[1].ingestor().run(workspaces[1].source(lake), "park")
    finally:
        release.set()
        thread.join(60)
    try:
        again = workspaces[1].ingestor().run(workspaces[1].source(lake), "park")
        versions = workspaces[1].catalog.versions("park")
    finally:
        for ws in workspaces:
            ws.close()
    assert [r.created for r in reports] == [True]
    assert not again.created and not again.resumed
    assert len(versions) == 1 and again.version.id == reports[0].version.id
    locks = project.state_dir / "kennel.db.locks"
    assert not locks.exists() or list(locks.iterdir()) == []  # a claim leaves no file
