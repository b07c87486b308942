"""A local ingest's workers write bytes without syncing; the driver makes them durable with
one filesystem sync before each checkpoint records them, never after."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

import kennel.ingest.run as run
import kennel.storage.local as local
from kennel.datasets.synth import generate
from kennel.db.audit import AuditLog
from kennel.db.ingest import IngestStore
from kennel.errors import SourceError
from kennel.storage import ContentStore
from kennel.storage.local import LocalBlobStore
from kennel.wiring import Workspace
from tests.conftest import make_project


def test_put_many_not_durable_leaves_the_sync_to_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(local, "_syncfs", synced.append)
    store = LocalBlobStore(tmp_path / "store")
    assert store.put_many([("a/b", b"1"), ("a/c", b"2")], durable=False) == 2
    assert synced == []
    assert store.get("a/c") == b"2"
    store.sync()
    assert synced == [store.root]
    assert store.put_many([("a/d", b"3")]) == 1  # durable by default: synced before it returns
    assert synced == [store.root, store.root]


def test_every_checkpoint_follows_a_sync_of_the_bytes_it_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = tmp_path / "lake"
    generate(lake, 48, seed=3)
    events: list[str] = []
    monkeypatch.setattr(local, "_syncfs", lambda _path: events.append("syncfs"))
    sync, save = ContentStore.sync, IngestStore.save

    def syncing(self: ContentStore) -> None:
        events.append("sync")
        sync(self)

    def saving(self: IngestStore, *args: object, **kwargs: object) -> None:
        events.append("save")
        save(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ContentStore, "sync", syncing)
    monkeypatch.setattr(IngestStore, "save", saving)
    monkeypatch.setattr(run, "FIRST_CHECKPOINT_S", 0.0)  # a checkpoint after every chunk
    monkeypatch.setattr(run, "CHECKPOINT_S", 0.0)
    ws = Workspace(make_project(tmp_path / "p"))
    try:
        ingestor = ws.ingestor(1)
        ingestor.chunk = 8
        report = ingestor.run(ws.source(str(lake)), "park")
    finally:
        ws.close()
    assert report.version.n_rows == 48
    saves = [i for i, e in enumerate(events) if e == "save"]
    assert len(saves) == 6  # one per chunk of 8
    for i in saves:  # each save comes straight after a sync of the store
        assert events[i - 2 : i] == ["sync", "syncfs"]
    assert events.count("syncfs") == len(saves)  # and no chunk synced on its own


def test_a_run_resumes_only_under_the_rules_it_began_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted after its first checkpoint, then run again after kennel.yaml changed: the
    files checked before are not taken on the old verdicts (every picture is 200 px, under
    the new minimum side: nothing is valid), while under the old rules it resumes."""
    lake = tmp_path / "lake"
    generate(lake, 48, seed=5)
    monkeypatch.setattr(run, "CHECKPOINT_S", 0.0)
    ws = Workspace(make_project(tmp_path / "p"))
    try:
        _interrupted(ws, lake, monkeypatch)
        stricter = ws.project.config.data.model_copy(update={"min_side": 300})
        other = run.Ingestor(ws.db, ws.content, ws.project.artifacts_url, stricter, workers=1)
        with pytest.raises(SourceError, match="too small"):
            other.run(ws.source(str(lake)), "park")
        report = ws.ingestor(1).run(ws.source(str(lake)), "park")  # the first rules again
    finally:
        ws.close()
    assert report.resumed and report.processed == 48 - 8
    assert report.version.n_rows == 48


def test_the_rules_a_run_resumes_under_include_the_allowed_roots(tmp_path: Path) -> None:
    """A manifest row outside the allowed roots is refused unread: allowing its folder later
    must not resume the run that recorded the refusal."""
    ws = Workspace(make_project(tmp_path / "p"))
    try:
        data = ws.project.config.data
        same = run.Ingestor(ws.db, ws.content, ws.project.artifacts_url, data)
        wider = data.model_copy(update={"allowed_roots": [str(tmp_path / "elsewhere")]})
        other = run.Ingestor(ws.db, ws.content, ws.project.artifacts_url, wider)
        assert ws.ingestor(1).rules == same.rules != other.rules
    finally:
        ws.close()


def _interrupted(ws: Workspace, lake: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An ingest of ``lake`` stopped right after its first checkpoint; its run id."""
    save = run.Ingestor._save

    def interrupted(self: run.Ingestor, *args: object) -> None:
        save(self, *args)  # type: ignore[arg-type]
        raise KeyboardInterrupt  # right after the first checkpoint

    monkeypatch.setattr(run, "FIRST_CHECKPOINT_S", 0.0)
    ingestor = ws.ingestor(1)
    ingestor.chunk = 8
    monkeypatch.setattr(run.Ingestor, "_save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ingestor.run(ws.source(str(lake)), "park")
    monkeypatch.setattr(run.Ingestor, "_save", save)
    with ws.db.session() as s:
        from kennel.db.schema import IngestRunRow

        (run_id,) = s.scalars(select(IngestRunRow.id).where(IngestRunRow.status == "running"))
    return run_id


def test_a_run_its_changed_folder_can_no_longer_resume_ends_as_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted, then the folder changed: the next ingest lists other files, so it cannot
    resume; once it is done the interrupted run ends as abandoned, its records deleted. A run
    whose process is alive (holding its claim) is left alone."""
    lake = tmp_path / "lake"
    generate(lake, 48, seed=5)
    ws = Workspace(make_project(tmp_path / "p"))
    try:
        store = IngestStore(ws.db)
        old = _interrupted(ws, lake, monkeypatch)
        assert store.count(old, "ok") == 8
        generate(tmp_path / "more", 4, seed=6)
        for i, path in enumerate(sorted((tmp_path / "more").rglob("*.jpg"))):
            (lake / path.parent.name / f"more-{i}{path.suffix}").write_bytes(path.read_bytes())
        source = ws.source(str(lake))
        live = store.start("f" * 32, dataset="park", source=source.describe(),
                           fingerprint="f" * 64, parent_version=None, files=1,
                           actor="t").id  # fmt: skip
        with store.claim("f" * 64):  # another run of the folder, whose process is alive
            report = ws.ingestor(1).run(source, "park")
            assert not report.resumed and report.version.n_rows == 52
        ended = store.get(old)
        assert ended.status == "abandoned" and ended.summary["superseded_by"] == report.run_id
        assert store.count(old, "ok") == 0
        assert store.get(live).status == "running"  # not taken from a live process
        actions = [(e.action, e.subject) for e in AuditLog(ws.db).entries()]
        assert ("ingest.abandoned", f"park:{old}") in actions
        assert ws.ingestor(1).run(ws.source(str(lake)), "park").version.id == report.version.id
        assert store.get(live).status == "abandoned"  # its process gone: ended by the next
    finally:
        ws.close()
