"""A local ingest's workers write bytes without syncing; the driver makes them durable with
one filesystem sync before each checkpoint records them, never after."""

from __future__ import annotations

from pathlib import Path

import pytest

import kennel.ingest.run as run
import kennel.storage.local as local
from kennel.datasets.synth import generate
from kennel.db.ingest import IngestStore
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
