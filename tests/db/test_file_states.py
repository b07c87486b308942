"""File states (kennel.ingest.filestate's record of what each local file held): saved with a
checkpoint, replaced by a later read of the same file, and found only with their item's size."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from kennel.db import Database
from kennel.db.datasets import DatasetStore, Item
from kennel.db.engine import upgrade
from kennel.db.ingest import IngestRecord, IngestStore
from tests.helpers import schema_at


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
    store.save([_item(a)], [_record(run.id, "/x.jpg", a)], [("/x.jpg", "10:1:1:7:1", a, 64, 48)])
    assert store.file_states(["/x.jpg", "/y.jpg", "/z.jpg"]) == (
        ["/x.jpg"],
        ["10:1:1:7:1"],
        [a],
        [64],
        [48],
    )
    store.save([_item(b)], [], [("/x.jpg", "10:2:2:7:1", b, 32, 24)])
    assert store.file_states(["/x.jpg"]) == (["/x.jpg"], ["10:2:2:7:1"], [b], [32], [24])
    assert store.file_states([]) == ([], [], [], [], [])


def test_migration_0011_sizes_each_state_from_its_item(metadata_url: str) -> None:
    """States written before 0011 get their item's size; one whose item is unknown gets none
    and is not found (its file is read again), as the join that 0011 replaced decided."""
    engine = schema_at(metadata_url, "0010")
    a, c = "a" * 64, "c" * 64
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO items (sha256, size, format, mode, width, height, brightness,"
                " contrast, sharpness, phash) VALUES (:a, 10, 'JPEG', 'RGB', 64, 48, 1, 2, 3, :p)"
            ),
            {"a": a, "p": "0" * 16},
        )
        connection.execute(
            text("INSERT INTO file_states (uri, stat, sha256) VALUES (:u, :s, :h)"),
            [{"u": "/x.jpg", "s": "10:1:1:7:1", "h": a}, {"u": "/y.jpg", "s": "1:1:1:1:1", "h": c}],
        )
    upgrade(engine)  # to head
    engine.dispose()
    database = Database.open(metadata_url)
    try:
        found = IngestStore(database).file_states(["/x.jpg", "/y.jpg"])
    finally:
        database.dispose()
    assert found == (["/x.jpg"], ["10:1:1:7:1"], [a], [64], [48])
