"""A monitoring window read from the columnar blocks (migration 0012) is the window the rows
give, and a window the blocks do not cover whole is read from the rows: on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, func, select

from kennel.db import Database, predictions
from kennel.db.predictions import LoggedPrediction, PredictionStore
from kennel.db.schema import PredictionBlockRow
from kennel.monitor.window import Window, load
from kennel.serve.predlog import PredictionLog
from tests.monitor.test_window_columns import T0, _assert_same, _json_window, _rows


@pytest.fixture
def db(metadata_url: str) -> Iterator[Database]:
    database = Database.open(metadata_url)
    yield database
    database.dispose()


@pytest.fixture
def from_blocks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each window read came from the blocks (True) or the rows (False)."""
    taken: list[bool] = []
    real = predictions.window_of

    def spy(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(predictions, "window_of", spy)
    return taken


def _blocks(db: Database) -> int:
    with db.session() as s:
        return int(s.execute(select(func.count()).select_from(PredictionBlockRow)).scalar_one())


def _log(db: Database, rows: list[dict[str, Any]], spool: Path) -> None:
    log = PredictionLog(db, spool, flush_s=0.05)
    log.start()
    for row in rows:
        log.add(row)
    assert log.flush(30.0)
    log.stop()


def _read(db: Database, **kwargs: Any) -> Window:
    return load(db, environment="production", **kwargs)


def test_a_window_from_blocks_is_the_window_of_the_rows(
    db: Database, tmp_path: Path, from_blocks: list[bool]
) -> None:
    rng = np.random.default_rng(0)
    rows = _rows(0, 120, rng)
    rows[5]["embedding"] = None  # one row logged without an embedding
    _log(db, rows[:60], tmp_path / "a.jsonl")
    _log(db, list(reversed(rows[60:])), tmp_path / "b.jsonl")  # a batch out of time order
    store = PredictionStore(db)
    for i in range(0, 120, 4):
        store.add_feedback(f"p{i:05d}", "dog" if i % 2 else "cat", actor="qa")
    assert _blocks(db) >= 4  # per version (class list), per batch

    until = T0 + timedelta(minutes=5)
    whole = _read(db, since=T0, until=until)
    assert from_blocks == [True] and len(whole) == 120
    assert whole.embedding.shape == (120, 0)  # mixed: as the rows read it
    _assert_same(whole, _json_window(db, T0, until))

    # boundaries that cut blocks, and a version's window
    since, until = T0 + timedelta(seconds=7), T0 + timedelta(seconds=101)
    cut = _read(db, since=since, until=until)
    assert cut.ids == [f"p{i:05d}" for i in range(7, 101)]
    _assert_same(cut, _json_window(db, since, until))
    second = _read(db, since=since, until=until, version=2)
    assert second.ids == [f"p{i:05d}" for i in range(9, 101, 3)]
    assert second.truth == ["cat" if i % 4 == 0 else None for i in range(9, 101, 3)]
    assert set(second.versions) == {2} and second.embedding.shape == (len(second), 16)
    assert len(_read(db, since=T0, until=until, model="other")) == 0
    assert from_blocks == [True] * 4
    naive = _read(db, since=T0.replace(tzinfo=None), until=until.replace(tzinfo=None))
    assert naive.ids == [f"p{i:05d}" for i in range(0, 101)]


def test_a_replayed_batch_adds_no_second_block(db: Database, from_blocks: list[bool]) -> None:
    rng = np.random.default_rng(1)
    batch = [LoggedPrediction(**r) for r in _rows(0, 30, rng)]
    store = PredictionStore(db)
    store.add_many(batch)
    before = _blocks(db)
    store.add_many(batch)  # a journal drained again after a crash
    store.add_many([*batch[10:], *(replace(p, id=f"n{i}") for i, p in enumerate(batch[:3]))])
    assert _blocks(db) == before + 2  # only the three new rows, one block per class list
    window = _read(db, since=T0, until=T0 + timedelta(minutes=5))
    assert from_blocks == [True] and len(window) == 33
    assert sorted(window.ids) == sorted([p.id for p in batch] + ["n0", "n1", "n2"])


def test_rows_the_blocks_do_not_hold_are_read_from_the_rows(
    db: Database, tmp_path: Path, from_blocks: list[bool]
) -> None:
    rng = np.random.default_rng(2)
    _log(db, _rows(0, 40, rng), tmp_path / "a.jsonl")
    with db.session() as s:  # as rows stored before 0012: no blocks for the newest batch
        newest = s.execute(select(func.max(PredictionBlockRow.id))).scalar_one()
        s.execute(delete(PredictionBlockRow).where(PredictionBlockRow.id == newest))
    until = T0 + timedelta(minutes=5)
    window = _read(db, since=T0, until=until)
    assert from_blocks == [False] and len(window) == 40
    _assert_same(window, _json_window(db, T0, until))


def _both(db: Database, **kwargs: Any) -> tuple[Window, Window]:
    """The window from the blocks, then from the rows (the blocks' reader made to decline)."""
    blocks = _read(db, **kwargs)
    real = predictions.window_of
    predictions.window_of = lambda *a, **k: None  # type: ignore[assignment]
    try:
        rows = _read(db, **kwargs)
    finally:
        predictions.window_of = real
    return blocks, rows


def test_ties_old_times_and_repeated_ids_read_alike_both_ways(
    db: Database, from_blocks: list[bool]
) -> None:
    """Predictions at the same microsecond come back in id order both ways (the drift tests
    sample by position); a time before 1970 is placed exactly; an id twice in one batch is
    stored, and copied, once."""
    rng = np.random.default_rng(3)
    rows = _rows(0, 12, rng)
    for i, row in enumerate(rows):
        row["id"] = f"t{(7 * i) % 12:02d}"  # ids out of order within each tie
        row["at"] = T0 + timedelta(seconds=i // 4)
    early = datetime(1969, 12, 31, 23, 59, 59, 900000, tzinfo=UTC)
    old = [dict(rows[0], id="e1", at=early), dict(rows[1], id="e2", at=early + timedelta(0.2))]
    twice = [dict(rows[2], id="dup", at=T0 + timedelta(seconds=9)),
             dict(rows[3], id="dup", at=T0 + timedelta(seconds=10))]  # fmt: skip
    PredictionStore(db).add_many([LoggedPrediction(**r) for r in [*rows, *old, *twice]])
    blocks, rows_read = _both(db, since=T0, until=T0 + timedelta(minutes=1))
    by_time = [r["id"] for r in sorted(rows, key=lambda r: (r["at"], r["id"]))]
    assert by_time != [r["id"] for r in rows]  # ties to break
    assert blocks.ids == rows_read.ids == [*by_time, "dup"]
    _assert_same(blocks, rows_read)
    ancient = datetime(1969, 12, 31, tzinfo=UTC)
    before, before_rows = _both(db, since=ancient, until=datetime(1970, 1, 2, tzinfo=UTC))
    assert before.ids == before_rows.ids == ["e1", "e2"]
    assert from_blocks == [True, True]  # (the rows' reads went around the spy)


def test_a_record_the_blocks_cannot_copy_still_reaches_the_log(
    db: Database, tmp_path: Path, from_blocks: list[bool]
) -> None:
    """An odd-length embedding (a malformed journal line) made the block's encoder raise and
    the drain thread die, for good: the batch is stored without its block instead."""
    rng = np.random.default_rng(4)
    rows = _rows(0, 5, rng)
    rows[0]["embedding"] = b"\x00\x01\x02"
    _log(db, rows, tmp_path / "a.jsonl")
    window = _read(db, since=T0, until=T0 + timedelta(minutes=1))
    assert len(window) == 5 and from_blocks == [False]  # read from the rows


def test_a_damaged_block_sends_the_window_to_the_rows(
    db: Database, tmp_path: Path, from_blocks: list[bool]
) -> None:
    _log(db, _rows(0, 20, np.random.default_rng(5)), tmp_path / "a.jsonl")
    until = T0 + timedelta(minutes=1)
    want = _read(db, since=T0, until=until)
    for damaged in (b"", b"\xff" * 40, None):
        with db.session() as s:
            first = s.execute(select(func.min(PredictionBlockRow.id))).scalar_one()
            data = damaged
            if data is None:  # a real block cut short
                data = s.get(PredictionBlockRow, first).data[:-64]  # type: ignore[union-attr]
            s.get(PredictionBlockRow, first).data = data  # type: ignore[union-attr]
        got = _read(db, since=T0, until=until)
        assert got.ids == want.ids and from_blocks[-1] is False


def test_a_row_stored_while_the_window_is_read_is_left_out_whole(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prediction (with its feedback, which may come first) stored between the blocks' read
    and the feedback's: the window is the one the blocks gave; the late label was a KeyError."""
    rng = np.random.default_rng(6)
    store = PredictionStore(db)
    store.add_many([LoggedPrediction(**r) for r in _rows(0, 10, rng)])
    late = LoggedPrediction(**_rows(10, 1, rng)[0])
    real = predictions.window_of

    def racing(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        store.add_feedback(late.id, "cat", actor="qa")
        store.add_many([late])
        return found

    monkeypatch.setattr(predictions, "window_of", racing)
    window = _read(db, since=T0, until=T0 + timedelta(minutes=5))
    assert len(window) == 10 and late.id not in window.ids
