"""A monitoring window read from the typed columns (migration 0009) is the window the JSON
gave before, and analyses the same: for rows written through the prediction log's journal,
rows an older kennel wrote without the columns, and rows back-filled by the migration; on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from kennel.config import KennelConfig
from kennel.db import Database, make_engine, upgrade
from kennel.db.predictions import PredictionStore
from kennel.db.schema import PredictionRow
from kennel.evaluate.drift import IMAGE_STATS, reference_statistics
from kennel.monitor.runner import analyse
from kennel.monitor.window import Window, load
from kennel.serve.predlog import PredictionLog, decode_embedding, row_of
from kennel.serve.runtime import Prediction
from tests.helpers import schema_at

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DIM = 16
# what a row written before 0009 holds: no typed column
OLD_COLUMNS = ("id", "at", "environment", "model", "version", "label", "confidence",
               "probabilities", "quality", "source", "latency_ms", "input_sha256",
               "embedding")  # fmt: skip


def _prediction(i: int, rng: np.random.Generator) -> Prediction:
    """Two model versions with different classes; some quality keys and the pet judgement
    missing, as from older services."""
    classes = ["cat", "dog"] if i % 3 else ["cat", "dog", "fox"]
    raw = rng.random(len(classes)) + 0.05
    probabilities = {c: float(v) for c, v in zip(classes, raw / raw.sum(), strict=True)}
    quality = {"brightness": float(rng.normal(120, 30)), "contrast": float(rng.normal(40, 5)),
               "sharpness": float(rng.gamma(2, 20)), "width": 200.0 + i % 7,
               "height": 180.0}  # fmt: skip
    if i % 5 == 0:
        del quality["sharpness"]
    label = max(probabilities, key=lambda c: probabilities[c])
    return Prediction(
        id=f"p{i:05d}",
        label=label,
        confidence=probabilities[label],
        probabilities=probabilities,
        model="pets",
        version=1 if i % 3 else 2,
        latency_ms=float(rng.gamma(2, 3)),
        quality=quality,
        embedding=rng.normal(size=DIM).astype(np.float32),
        pet=None if i % 4 == 0 else bool(i % 7),
        pet_score=None if i % 4 == 0 else 0.5,
    )


def _rows(start: int, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    return [
        row_of(_prediction(i, rng), environment="production", source=f"cam-{i % 3}",
               input_sha256=None, at=T0 + timedelta(seconds=i))
        for i in range(start, start + n)
    ]  # fmt: skip


def _insert_old(url: str, rows: list[dict[str, Any]]) -> None:
    """As an older kennel writes them: only the columns it knows."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                PredictionRow.__table__.insert(),  # type: ignore[attr-defined]
                [{k: r[k] for k in OLD_COLUMNS} for r in rows],
            )
    finally:
        engine.dispose()


def _json_window(db: Database, since: datetime, until: datetime) -> Window:
    """The window as kennel read it before 0009: every row's JSON, one at a time."""
    observed = PredictionStore(db).window("production", since=since, until=until)
    rows = [o.prediction for o in observed]
    classes = sorted({c for r in rows for c in r.probabilities})
    n = len(rows)
    embeddings = [decode_embedding(r.embedding) for r in rows]
    return Window(
        ids=[r.id for r in rows],
        classes=classes,
        probabilities=np.array(
            [[r.probabilities.get(c, 0.0) for c in classes] for r in rows], dtype=np.float64
        ).reshape(n, len(classes)),
        image_stats={
            k: np.array([r.quality.get(k, np.nan) for r in rows], dtype=np.float64)
            for k in IMAGE_STATS
        },
        # none logged or of mixed sizes: no embedding column (kennel.db.predcols)
        embedding=np.stack(embeddings).astype(np.float32)
        if len({e.size for e in embeddings}) == 1 and embeddings[0].size
        else np.zeros((n, 0), np.float32),
        truth=[o.truth for o in observed],
        sources=[r.source for r in rows],
        versions=[r.version for r in rows],
        latency_ms=np.array([r.latency_ms for r in rows], dtype=np.float64),
        pet=np.array([r.quality.get("pet", np.nan) for r in rows], dtype=np.float64),
    )


def _reference() -> dict[str, Any]:
    rng = np.random.default_rng(1)
    stats = {k: rng.normal(100, 30, 400) for k in IMAGE_STATS}
    raw = rng.random((400, 3))
    return reference_statistics(
        stats, raw / raw.sum(1, keepdims=True), ["cat", "dog", "fox"], rng.normal(size=(400, DIM))
    )


def _assert_same(got: Window, want: Window) -> None:
    assert got.ids == want.ids and got.classes == want.classes == ["cat", "dog", "fox"]
    assert got.truth == want.truth and got.sources == want.sources
    assert got.versions == want.versions
    np.testing.assert_array_equal(got.probabilities, want.probabilities)
    np.testing.assert_array_equal(got.latency_ms, want.latency_ms)
    assert got.pet is not None and want.pet is not None
    np.testing.assert_array_equal(got.pet, want.pet)
    for k in IMAGE_STATS:
        np.testing.assert_array_equal(got.image_stats[k], want.image_stats[k])
    np.testing.assert_array_equal(got.embedding.astype(np.float32), want.embedding)
    config = KennelConfig()
    reference = _reference()
    # as JSON: a statistic of a column with unmeasured rows is nan on both sides
    assert json.dumps(analyse(got, reference, config), sort_keys=True) == json.dumps(
        analyse(want, reference, config), sort_keys=True
    )


def test_a_window_of_journalled_and_older_rows_analyses_as_from_the_json(
    metadata_url: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    db = Database.open(metadata_url)
    try:
        log = PredictionLog(db, tmp_path / "spool.jsonl", flush_s=0.05)
        log.start()
        for row in _rows(0, 60, rng):  # through the journal, as a service logs them
            log.add(row)
        assert log.flush(30.0)
        log.stop()
        _insert_old(metadata_url, _rows(60, 40, rng))  # an older kennel, after the upgrade
        store = PredictionStore(db)
        for i in range(0, 100, 3):
            store.add_feedback(f"p{i:05d}", "dog" if i % 2 else "cat", actor="qa")
        until = T0 + timedelta(minutes=5)
        window = load(db, environment="production", since=T0, until=until)
        assert len(window) == 100 and window.pet is not None
        assert np.isnan(window.image_stats["sharpness"][0]) and np.isnan(window.pet[0])
        assert window.probabilities[1, 2] == 0.0  # pets@1 knows no fox
        _assert_same(window, _json_window(db, T0, until))
        assert len(load(db, environment="production", since=until, until=until)) == 0
        naive = load(db, environment="production", since=T0.replace(tzinfo=None),
                     until=until.replace(tzinfo=None))  # fmt: skip
        assert naive.ids == window.ids  # a naive time is UTC, on both databases
        second = load(db, environment="production", since=T0, until=until, version=2)
        assert second.ids == [f"p{i:05d}" for i in range(0, 100, 3)]
        assert second.classes == ["cat", "dog", "fox"] and set(second.versions) == {2}
        assert len(load(db, environment="production", since=T0, until=until, model="x")) == 0
    finally:
        db.dispose()


def test_migration_0009_back_fills_the_rows_already_logged(metadata_url: str) -> None:
    rng = np.random.default_rng(2)
    rows = _rows(0, 50, rng)
    rows[7]["probabilities"] = {}  # a row with nothing to pack still reads back
    engine = schema_at(metadata_url, "0008")
    _insert_old(metadata_url, rows)
    upgrade(engine)  # to head, rows present
    with engine.connect() as connection:
        filled = connection.execute(
            text("SELECT class_names, brightness, sharpness, pet FROM predictions ORDER BY id")
        ).all()
    engine.dispose()
    assert json.loads(filled[1][0]) == ["cat", "dog"] and json.loads(filled[0][0]) == [
        "cat", "dog", "fox"]  # fmt: skip
    assert filled[1][1] == pytest.approx(rows[1]["quality"]["brightness"], abs=0)
    assert filled[0][2] is None and filled[0][3] is None  # not measured, not judged
    assert filled[1][3] == 1.0 and json.loads(filled[7][0]) == []

    db = Database.open(metadata_url)
    try:
        until = T0 + timedelta(minutes=5)
        window = load(db, environment="production", since=T0, until=until)
        want = _json_window(db, T0, until)
        assert window.probabilities[7].tolist() == want.probabilities[7].tolist() == [0, 0, 0]
        _assert_same(window, want)
    finally:
        db.dispose()
