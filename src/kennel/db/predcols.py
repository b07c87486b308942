"""What monitoring reads of the prediction log, as typed columns: each prediction's class
probabilities packed as float64 beside the class names they belong to, and the image
statistics and pet judgement as plain numbers. They are derived from the ``probabilities`` and
``quality`` JSON on write (migration 0009 back-filled older rows), so a window of 100,000
predictions is read with one SELECT into arrays instead of 200,000 JSON documents parsed into
dictionaries. The JSON stays the record people and the API read.

A row an older kennel wrote after the upgrade has these columns empty (NULL); ``read`` takes
such rows from their JSON instead, so a window may mix both.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# the quality keys kept as columns (kennel.evaluate.drift.IMAGE_STATS and the pet judgement)
STATS = ("brightness", "contrast", "sharpness", "width", "height", "pet")
CLASS_NAMES = "class_names"  # JSON list of the class names, in the order of CLASS_PROBS
CLASS_PROBS = "class_probs"  # float64 little-endian, one per class
COLUMNS = (CLASS_NAMES, CLASS_PROBS, *STATS)
# a window's row: these, then COLUMNS; class_probs is NULL where the typed columns are empty
LEADING = ("id", "source", "version", "latency_ms", "embedding", "truth")
PROBS_AT = len(LEADING) + COLUMNS.index(CLASS_PROBS)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def encode(probabilities: Mapping[str, Any], quality: Mapping[str, Any]) -> dict[str, Any]:
    """The typed columns of one prediction, from its probabilities and quality."""
    names = list(probabilities)
    out: dict[str, Any] = {
        CLASS_NAMES: json.dumps(names, separators=(",", ":")),
        CLASS_PROBS: struct.pack(f"<{len(names)}d", *(float(probabilities[c]) for c in names)),
    }
    for key in STATS:
        out[key] = _number(quality.get(key))
    return out


@dataclass(frozen=True)
class PredictionColumns:
    """A window of the prediction log as arrays, oldest first."""

    ids: list[str]
    sources: list[str]
    versions: list[int]
    truth: list[str | None]  # the feedback label, where one arrived
    latency_ms: np.ndarray  # float64 [n]
    stats: dict[str, np.ndarray]  # STATS -> float64 [n], nan where not measured
    classes: list[str]  # every class of the window, sorted
    probabilities: np.ndarray  # float64 [n, classes]; 0 for a class a row's model lacks
    embedding: np.ndarray  # float16 [n, d] as logged; [n, 0] when not logged or of mixed sizes

    def __len__(self) -> int:
        return len(self.ids)


def _probabilities(names: Sequence[str], packed: Sequence[bytes]) -> tuple[list[str], np.ndarray]:
    """The probability matrix over the sorted union of classes. Rows are grouped by their
    class list (one group per model version at most), each group decoded in one call."""
    n = len(names)
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(names):
        groups.setdefault(key, []).append(i)
    lists = {key: json.loads(key) for key in groups}
    classes = sorted({c for cs in lists.values() for c in cs})
    position = {c: j for j, c in enumerate(classes)}
    matrix = np.zeros((n, len(classes)), dtype=np.float64)
    for key, rows in groups.items():
        columns = [position[c] for c in lists[key]]
        blob = b"".join(packed[i] for i in rows) if len(rows) < n else b"".join(packed)
        values = np.frombuffer(blob, dtype="<f8").reshape(len(rows), len(columns))
        if len(rows) == n:
            matrix[:, columns] = values
        else:
            matrix[np.ix_(rows, columns)] = values
    return classes, matrix


def _embedding(blobs: Sequence[bytes | None]) -> np.ndarray:
    n = len(blobs)
    sizes = {len(b) if b else 0 for b in blobs}
    if n == 0 or len(sizes) != 1 or 0 in sizes:
        return np.zeros((n, 0), dtype=np.float32)
    # kept as logged: drift projects the few hundred rows its test samples, not all of them
    return np.frombuffer(b"".join(blobs), dtype="<f2").reshape(n, -1)  # type: ignore[arg-type]


def columns_of(
    rows: Sequence[Sequence[Any]], legacy: Mapping[str, tuple[Any, Any]] | None = None
) -> PredictionColumns:
    """Arrays from rows of LEADING and COLUMNS (``PredictionStore.columns``). ``legacy``
    holds (probabilities, quality) by id for rows whose typed columns are empty (written by an
    older kennel); they are encoded here the way a write would have."""
    n = len(rows)
    if n == 0:
        return PredictionColumns([], [], [], [], np.zeros(0), {k: np.zeros(0) for k in STATS},
                                 [], np.zeros((0, 0)), np.zeros((0, 0), np.float32))  # fmt: skip
    if legacy:
        patched = []
        for row in rows:
            if row[PROBS_AT] is None:
                probabilities, quality = legacy[row[0]]
                typed = encode(probabilities or {}, quality or {})
                row = (*row[: len(LEADING)], *(typed[c] for c in COLUMNS))
            patched.append(row)
        rows = patched
    ids, sources, versions, latency, embedding, truth, names, packed, *stats = zip(
        *rows, strict=True
    )
    classes, probabilities = _probabilities(names, packed)
    return PredictionColumns(
        ids=list(ids),
        sources=list(sources),
        versions=list(versions),
        truth=list(truth),
        latency_ms=np.array(latency, dtype=np.float64),
        # None becomes nan in a float array
        stats={k: np.array(v, dtype=np.float64) for k, v in zip(STATS, stats, strict=True)},
        classes=classes,
        probabilities=probabilities,
        embedding=_embedding(embedding),
    )
