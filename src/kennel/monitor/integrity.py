"""Data integrity of a window of live inputs: what arrived broken or unlike anything the model
was trained on, how often the model was unsure, and how often the pet judgement saw no cat or
dog at all (the out-of-distribution share)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kennel.evaluate.drift import IMAGE_STATS
from kennel.monitor.window import Window


def check(
    window: Window,
    reference: Mapping[str, Any],
    *,
    rejected: int = 0,
    low_confidence: float = 0.6,
) -> dict[str, Any]:
    """Shares of the window outside the training range, per image statistic (min to max of
    the training images), decode failures and low-confidence predictions."""
    n = len(window)
    ranges = reference.get("image_stats", {})
    outside: dict[str, float] = {}
    for key in IMAGE_STATS:
        if key not in ranges or n == 0:
            continue
        q = ranges[key]["quantiles"]
        values = window.image_stats[key]
        outside[key] = float(np.mean((values < q[0]) | (values > q[-1])))
    size_keys = [k for k in ("width", "height") if k in outside]
    pet = window.pet if window.pet is not None else np.full(n, np.nan)
    judged = pet[~np.isnan(pet)]
    return {
        "n": n,
        "decode_failures": rejected,
        "decode_failure_rate": rejected / (n + rejected) if n + rejected else 0.0,
        "outside_training_range": outside,
        "size_anomaly_rate": max((outside[k] for k in size_keys), default=0.0),
        "low_confidence_threshold": low_confidence,
        "low_confidence_rate": float(np.mean(window.confidence < low_confidence)) if n else 0.0,
        "ood_judged": len(judged),
        "ood_rate": float(np.mean(judged == 0.0)) if len(judged) else 0.0,
    }
