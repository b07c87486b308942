"""File states (kennel.ingest.filestate's record of what each local file held): saved with a
checkpoint, replaced by a later read of the same file, and found only with their item."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kennel.db import Database
from kennel.db.datasets import DatasetStore, Item
from kennel.db.ingest import IngestRecord, IngestStore


def _item(sha256: str) -> Item:
    return Item(sha256, 10, "JPEG", "RGB", 64, 48, 1.0, 2.0, 3.0, "0" * 16)


def _record(run_id: str, uri: str, sha256: str) -> IngestRecord:
    return IngestRecord(run_id, uri, 0, "cat", "ok", sha256, None, {})


@pytest.fixture
def store(metadata_url: str) -> Iterator[IngestStore]:
    database = Database.open(metadata_url)
    yield IngestStore(database)
    database.dispose()


def test_a_later_read_replaces_a_files_state(store: IngestStore) -> None:
    DatasetStore(store.db).ensure_dataset("d")
    run = store.start("r1", dataset="d", source="s", fingerprint="f", parent_version=None,
                      files=2, actor="t")  # fmt: skip
    a, b = "a" * 64, "b" * 64
    store.save([_item(a)], [_record(run.id, "/x.jpg", a)], [("/x.jpg", "10:1:1:7:1", a)])
    # a state whose item is unknown is not found
    store.save([], [_record(run.id, "/y.jpg", "c" * 64)], [("/y.jpg", "1:1:1:1:1", "c" * 64)])
    assert store.file_states(["/x.jpg", "/y.jpg", "/z.jpg"]) == {
        "/x.jpg": ("10:1:1:7:1", a, 64, 48)
    }
    store.save([_item(b)], [], [("/x.jpg", "10:2:2:7:1", b)])
    assert store.file_states(["/x.jpg"]) == {"/x.jpg": ("10:2:2:7:1", b, 64, 48)}
