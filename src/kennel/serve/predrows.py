"""A prediction as the prediction log's row, and the row's embedding read back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from kennel.serve.runtime import Prediction


def row_of(
    p: Prediction,
    *,
    environment: str,
    source: str,
    input_sha256: str | None,
    at: datetime | None = None,
    data: bytes | None = None,
) -> dict[str, Any]:
    """A prediction log row; ``data`` (the input image) is kept when the log has a store.
    The pet judgement travels in the quality column (``pet`` 1.0 or 0.0, ``pet_score``)."""
    quality = dict(p.quality)
    if p.pet is not None:
        quality["pet"] = float(p.pet)
    if p.pet_score is not None:
        quality["pet_score"] = p.pet_score
    row = {
        "id": p.id,
        "at": at or datetime.now(UTC),
        "environment": environment,
        "model": p.model,
        "version": p.version,
        "label": p.label,
        "confidence": p.confidence,
        "probabilities": p.probabilities,
        "quality": quality,
        "source": source,
        "latency_ms": p.latency_ms,
        "input_sha256": input_sha256,
        "embedding": p.embedding.astype("<f2").tobytes(),
    }
    if data is not None:
        row["input"] = data
    return row


def decode_embedding(data: bytes | None) -> np.ndarray:
    return np.frombuffer(data or b"", dtype="<f2").astype(np.float32)
