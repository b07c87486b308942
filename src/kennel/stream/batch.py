"""Pattern 4, offline predictions: score a folder, manifest or dataset version as a scheduled job
and write the predictions, with the model version and time, into a shared table that
applications read. Re-runs are idempotent: a row is keyed by (uri, input sha256, model,
version), so scoring the same inputs with the same model inserts nothing new."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kennel.db.scores import Score, ScoreTable
from kennel.imaging import ImageRejected
from kennel.progress import Event, Progress, silent
from kennel.serve.runtime import Predictor

_CHUNK = 64


@dataclass(frozen=True)
class BatchReport:
    table: str
    model: str
    version: int
    inputs: int
    inserted: int
    already_scored: int
    errors: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.inputs / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "images_per_second": round(self.images_per_second, 1)}


def score(
    predictor: Predictor,
    inputs: Iterable[tuple[str, bytes | str]],
    *,
    db_url: str,
    table: str,
    progress: Progress = silent,
    total: int | None = None,
) -> BatchReport:
    """Score ``(uri, bytes or read-error)`` pairs and upsert them into ``table`` at ``db_url``."""
    began = time.perf_counter()
    with ScoreTable(db_url, table) as target:
        target.create()  # a user's shared table, not kennel's own schema
        seen = inserted = errors = 0
        chunk: list[tuple[str, bytes | str]] = []

        def flush() -> None:
            nonlocal inserted, errors
            scores, good, prepared = [], [], []
            now = datetime.now(UTC)
            for uri, data in chunk:
                digest = hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else ""
                key = (uri, digest)
                try:
                    if not isinstance(data, bytes):
                        raise ImageRejected(data)
                    prepared.append(predictor.prepare(data))
                    good.append(key)
                except ImageRejected as exc:
                    errors += 1
                    scores.append(
                        Score(uri, digest, predictor.name, predictor.version, None, None, None,
                              str(exc), now)
                    )  # fmt: skip
            for (uri, digest), p in zip(good, predictor.predict_prepared(prepared), strict=True):
                scores.append(
                    Score(uri, digest, predictor.name, predictor.version, p.label, p.confidence,
                          p.probabilities, None, now, p.pet, p.pet_score)
                )  # fmt: skip
            inserted += target.add_new(scores)
            chunk.clear()

        for item in inputs:
            chunk.append(item)
            seen += 1
            if len(chunk) >= _CHUNK:
                flush()
                progress(Event("score", done=seen, total=total))
        if chunk:
            flush()
        progress(Event("score", done=seen, total=seen))
    return BatchReport(
        table,
        predictor.name,
        predictor.version,
        seen,
        inserted,
        seen - inserted,
        errors,
        time.perf_counter() - began,
    )


def read(db_url: str, table: str, uri: str) -> list[dict[str, Any]]:
    """The example reader: every stored prediction for one input, newest model first."""
    with ScoreTable(db_url, table) as target:
        return [score.as_dict() for score in target.for_uri(uri)]
