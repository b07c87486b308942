"""Pattern 4, offline predictions: score a folder, manifest or dataset version as a scheduled job
and write the predictions, with the model version and time, into a shared table that
applications read. Re-runs are idempotent: a row is keyed by (uri, input sha256, model,
version), so scoring the same inputs with the same model inserts nothing new.

The work is :func:`score_chunk` over chunks of inputs (decode, preprocess, infer); a
:class:`Scorer` decides where those calls run and hands each chunk's scores back, in order, to
the driver, which alone writes them: :class:`LocalScorer` in this process, or
``kennel.stream.ray_scoring.RayScorer`` as Ray tasks on a cluster. The same inputs give the
same rows on either."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from kennel.db.scores import Score, ScoreTable
from kennel.errors import SourceError
from kennel.imaging import ImageRejected
from kennel.progress import Event, Progress, silent
from kennel.serve.runtime import Predictor

CHUNK = 64
Item = tuple[str, bytes | str]  # (uri, the input's bytes or why it could not be read)


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


def score_chunk(predictor: Predictor, chunk: list[Item]) -> list[Score]:
    """Score one chunk: a row per input, a label or the reason it could not be used (pure
    but for the time stamp, so a retried chunk gives the same rows)."""
    scores, good, prepared = [], [], []
    now = datetime.now(UTC)
    for uri, data in chunk:
        digest = hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else ""
        try:
            if not isinstance(data, bytes):
                raise ImageRejected(data)
            prepared.append(predictor.prepare(data))
            good.append((uri, digest))
        except ImageRejected as exc:
            scores.append(
                Score(uri, digest, predictor.name, predictor.version, None, None, None, str(exc),
                      now)
            )  # fmt: skip
    for (uri, digest), p in zip(good, predictor.predict_prepared(prepared), strict=True):
        scores.append(
            Score(uri, digest, predictor.name, predictor.version, p.label, p.confidence,
                  p.probabilities, None, now, p.pet, p.pet_score)
        )  # fmt: skip
    return scores


class Scorer(Protocol):
    """Runs ``score_chunk`` over chunks; scores come back in the order the chunks went in."""

    name: str

    def connected(self) -> AbstractContextManager[None]:
        """Reach the executor, or raise before the caller writes anything."""
        ...

    def map(self, chunks: Iterable[list[Item]]) -> Iterator[list[Score]]:
        """Score ``chunks``; only valid inside ``connected``."""
        ...


class LocalScorer:
    """This process (ONNX Runtime already uses every core for a chunk)."""

    name = "local"

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def connected(self) -> AbstractContextManager[None]:
        return nullcontext()

    def map(self, chunks: Iterable[list[Item]]) -> Iterator[list[Score]]:
        for chunk in chunks:
            yield score_chunk(self.predictor, chunk)


def chunked(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def score(
    predictor: Predictor,
    inputs: Iterable[Item],
    *,
    db_url: str,
    table: str,
    progress: Progress = silent,
    total: int | None = None,
    scorer: Scorer | None = None,
    chunk: int = CHUNK,
) -> BatchReport:
    """Score ``(uri, bytes or read-error)`` pairs on ``scorer`` (default: this process) and
    upsert them into ``table`` at ``db_url``, a chunk at a time, in input order.

    A batch in which no input could be scored is a SourceError once its rows are stored (each
    unreadable input keeps its reason there): a mistyped or emptied source must fail its
    scheduled job, not pass it as "0 scored". A re-run over inputs scored before is not such a
    batch: they are read and scored again, and only their rows are already there."""
    began = time.perf_counter()
    scorer = scorer or LocalScorer(predictor)
    seen = inserted = errors = 0
    first_error: str | None = None
    with scorer.connected(), ScoreTable(db_url, table) as target:
        target.create()  # a user's shared table, not kennel's own schema
        for scores in scorer.map(chunked(inputs, chunk)):
            inserted += target.add_new(scores)
            failed = [s.error for s in scores if s.error is not None]
            errors += len(failed)
            first_error = first_error or next((" ".join(f.split()) for f in failed), None)
            seen += len(scores)
            progress(Event("score", done=seen, total=total))
    progress(Event("score", done=seen, total=seen))
    if errors == seen:  # already_scored counts stored error rows too: it cannot tell this
        raise SourceError(
            "no input to score" if not seen else
            f"no input could be scored: {seen} unreadable (the first: {first_error}); the "
            f"reasons are stored in table {table}"
        )  # fmt: skip
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
    """The example reader: every stored prediction for one input, newest model first. A
    relative path or a ``file://`` URL is also looked up as the absolute path a folder's
    scoring stored. Nothing is written: a SQLite file is opened read-only."""
    with ScoreTable(db_url, table, read_only=True) as target:
        scores = target.for_uri(uri)
        local = _file_path(uri)
        if not scores and local != uri:
            scores = target.for_uri(local)
        if not scores and "://" not in local and not os.path.isabs(local):
            for path in dict.fromkeys((os.path.abspath(local), os.path.realpath(local))):
                scores = scores or target.for_uri(path)
        return [score.as_dict() for score in scores]


def _file_path(uri: str) -> str:
    """The path a ``file:`` URL names (``file:///a%20b.jpg`` is ``/a b.jpg``; its host empty or
    localhost), else ``uri`` as it is."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file" or parts.netloc.lower() not in ("", "localhost"):
        return uri
    return unquote(parts.path)
