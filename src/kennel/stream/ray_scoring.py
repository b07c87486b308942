"""Batch scoring's chunks as Ray tasks, on the engine ingest uses (``kennel.ingest.ray_engine``).

The driver reads the inputs and sends each chunk's bytes with its task; the bundle travels once
through Ray's object store and each worker process verifies and loads it once. A task is a pure
function of its chunk (it writes nothing), so Ray may run it again when its worker process or
node dies; the driver alone writes the scores, chunk by chunk in input order, as the local path
does. A chunk is never lost (its task is retried, or the run fails and a re-run scores what is
missing) and never stored twice (one result per chunk, and rows are keyed).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kennel.db.scores import Score
from kennel.ingest.ray_engine import RayEngine
from kennel.serve.runtime import Bundle, Predictor
from kennel.stream.batch import Item, score_chunk


@dataclass(frozen=True)
class Model:
    """What a worker needs to rebuild the driver's Predictor: a key, the bundle (an object
    reference, inside a list so that Ray does not fetch it for a worker that has it loaded)
    and the settings the driver's Predictor was built with."""

    key: tuple[str, int, str]  # name, version, sha256 of the served ONNX file
    bundle: list[Any]
    prefer_int8: bool
    max_pixels: int
    max_bytes: int | None


# Worker-side state: the Predictors this worker process has loaded, by key.
_predictors: dict[tuple[str, int, str], Predictor] = {}


def score_on_worker(model: Model, chunk: list[Item]) -> list[Score]:
    """One Ray task: score a chunk (safe to run twice: it writes nothing)."""
    predictor = _predictors.get(model.key)
    if predictor is None:
        import ray

        files: Mapping[str, bytes] = ray.get(model.bundle[0])
        bundle = Bundle.from_files(files, prefer_int8=model.prefer_int8)  # hash-verified again
        # one thread: the task holds one CPU of the cluster, and a node runs one task per CPU
        predictor = Predictor(
            bundle, threads=1, max_pixels=model.max_pixels, max_bytes=model.max_bytes
        )
        _predictors.clear()  # one model per run: an old one is not kept alive
        _predictors[model.key] = predictor
    return score_chunk(predictor, chunk)


class RayScorer:
    """Score ``predictor``'s chunks as Ray tasks on ``engine``'s cluster."""

    name = "ray"

    def __init__(self, engine: RayEngine, predictor: Predictor) -> None:
        self.engine = engine
        self.predictor = predictor
        self._model: Model | None = None

    @contextmanager
    def connected(self) -> Iterator[None]:
        import hashlib

        # workers write nothing to the artifact store: any store serves any cluster
        with self.engine.session():
            import ray

            bundle, p = self.predictor.bundle, self.predictor
            digest = hashlib.sha256(bundle.model).hexdigest()
            self._model = Model(
                key=(p.name, p.version, digest),
                bundle=[ray.put(dict(bundle.files))],
                prefer_int8=bundle.int8,
                max_pixels=p.max_pixels,
                max_bytes=p.max_bytes,
            )
            try:
                yield
            finally:
                self._model = None

    def map(self, chunks: Iterable[list[Item]]) -> Iterator[list[Score]]:
        model = self._model
        if model is None:
            raise RuntimeError("RayScorer.map called outside connected()")
        return self.engine.tasks(score_on_worker, ((model, c) for c in chunks), job="batch-score")
