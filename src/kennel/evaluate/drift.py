"""Drift of a production window against the training reference: pure statistics.

Each test gives a statistic, a p-value where one is defined, and the population stability
index (PSI) as an effect size. A test flags drift only when its p-value is below the
Bonferroni-adjusted level (the window runs several tests; without the correction a
same-distribution window would raise false alarms) *and*, for the distribution tests, its PSI
reaches ``min_psi``: a large window makes even a negligible shift significant, and a
negligible shift is not worth waking anyone for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

EPS = 1e-4


@dataclass(frozen=True)
class DriftTest:
    name: str  # e.g. "image.brightness", "embedding", "prediction.class"
    method: str  # "ks", "chi2" or "mmd"
    statistic: float
    p_value: float
    psi: float | None
    alpha: float  # the level this test was held to (after correction)
    drifted: bool
    n_reference: int
    n_current: int

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class DriftReport:
    tests: list[DriftTest] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return any(t.drifted for t in self.tests)

    def test(self, name: str) -> DriftTest:
        return next(t for t in self.tests if t.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {"drifted": self.drifted, "tests": [t.as_dict() for t in self.tests]}


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index over the reference's quantile bins."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:  # (near-)constant reference: compare on/off the constant value
        ref = np.array([np.mean(reference == edges[0]), np.mean(reference != edges[0])])
        cur = np.array([np.mean(current == edges[0]), np.mean(current != edges[0])])
    else:
        inner = edges[1:-1]
        ref = np.bincount(np.searchsorted(inner, reference, "right"), minlength=len(edges) - 1)
        cur = np.bincount(np.searchsorted(inner, current, "right"), minlength=len(edges) - 1)
        ref, cur = ref / max(1, ref.sum()), cur / max(1, cur.sum())
    return categorical_psi(ref, cur)


def categorical_psi(ref: np.ndarray, cur: np.ndarray) -> float:
    ref, cur = np.clip(ref, EPS, None), np.clip(cur, EPS, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks(
    name: str, reference: np.ndarray, current: np.ndarray, alpha: float, min_psi: float
) -> DriftTest:
    result = stats.ks_2samp(reference, current)
    index = psi(reference, current)
    p = float(result.pvalue)
    return DriftTest(
        name, "ks", float(result.statistic), p, index, alpha,
        p < alpha and index >= min_psi, len(reference), len(current),
    )  # fmt: skip


def classes(
    name: str,
    reference_ratio: Mapping[str, float],
    current: Sequence[str],
    alpha: float,
    min_psi: float,
) -> DriftTest:
    """Chi-square goodness of fit of the window's class counts to the reference ratios."""
    labels = sorted(set(reference_ratio) | set(current))
    observed = np.array([sum(1 for c in current if c == k) for k in labels], dtype=np.float64)
    expected_ratio = np.array([reference_ratio.get(k, 0.0) for k in labels]) + EPS
    expected_ratio /= expected_ratio.sum()
    n = observed.sum()
    result = stats.chisquare(observed, expected_ratio * n)
    index = categorical_psi(expected_ratio, observed / max(n, 1))
    p = float(result.pvalue)
    return DriftTest(
        name, "chi2", float(result.statistic), p, index, alpha,
        p < alpha and index >= min_psi, -1, int(n),
    )  # fmt: skip


def mmd(
    name: str,
    reference: np.ndarray,
    current: np.ndarray,
    alpha: float,
    *,
    max_n: int = 300,
    permutations: int = 200,
    seed: int = 0,
    project: Callable[[np.ndarray], np.ndarray] | None = None,
) -> DriftTest:
    """Maximum mean discrepancy (RBF kernel, median heuristic) with a permutation p-value, on
    at most ``max_n`` points from each side. ``project`` maps the current points chosen into
    the reference's space: only they are projected, not the whole window."""
    rng = np.random.default_rng(seed)
    if len(reference) > max_n:
        reference = reference[rng.choice(len(reference), max_n, replace=False)]
    if len(current) > max_n:
        current = current[rng.choice(len(current), max_n, replace=False)]
    if project is not None:
        current = project(current)
    pooled = np.vstack([reference, current]).astype(np.float64)
    n, m = len(reference), len(current)
    sq = (pooled * pooled).sum(1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0)
    median = float(np.median(dist[np.triu_indices(len(pooled), 1)])) or 1.0
    kernel = np.exp(-dist / median)

    # All permutations at once: column j of ``member`` marks the points sample A gets in
    # permutation j (column 0 is the observed split), so every MMD is a few matrix products.
    total = n + m
    member = np.zeros((total, permutations + 1))
    member[:n, 0] = 1.0
    for j in range(1, permutations + 1):
        member[rng.permutation(total)[:n], j] = 1.0
    diag = np.diag(kernel)
    k_in = kernel @ member  # sum of kernel values from each point to sample A
    k_out = kernel.sum(axis=1)[:, None] - k_in
    within_a = (member * k_in).sum(axis=0) - member.T @ diag
    within_b = ((1 - member) * k_out).sum(axis=0) - (1 - member).T @ diag
    across = (member * k_out).sum(axis=0)
    stats_ = within_a / (n * (n - 1)) + within_b / (m * (m - 1)) - 2 * across / (n * m)
    observed = float(stats_[0])
    exceed = int(np.sum(stats_[1:] >= observed))
    p = (exceed + 1) / (permutations + 1)
    return DriftTest(name, "mmd", observed, p, None, alpha, p < alpha, n, m)


IMAGE_STATS = ("brightness", "contrast", "sharpness", "width", "height")


def analyse(
    reference: Mapping[str, Any],
    *,
    image_stats: Mapping[str, np.ndarray],
    labels: Sequence[str],
    confidence: np.ndarray,
    embedding: np.ndarray | None,
    alpha: float = 0.05,
    min_psi: float = 0.1,
    seed: int = 0,
) -> DriftReport:
    """Every configured test of a window against a bundle's ``reference`` statistics."""
    sample = reference.get("sample", {})
    names = [k for k in IMAGE_STATS if k in sample and k in image_stats]
    has_embedding = embedding is not None and len(embedding) > 1 and "embedding_pca" in reference
    count = len(names) + 2 + int(has_embedding)
    level = alpha / count  # Bonferroni: the whole window is held to ``alpha``
    tests = [
        ks(f"image.{k}", np.asarray(sample[k]), np.asarray(image_stats[k]), level, min_psi)
        for k in names
    ]
    tests.append(
        ks("prediction.confidence", np.asarray(reference["confidence_sample"]), confidence,
           level, min_psi)
    )  # fmt: skip
    tests.append(classes("prediction.class", reference["prediction_ratio"], labels, level, min_psi))
    if has_embedding and embedding is not None:
        pca = reference["embedding_pca"]
        mean, components = np.asarray(pca["mean"]), np.asarray(pca["components"])
        tests.append(
            mmd("embedding", np.asarray(pca["sample"]), embedding, level, seed=seed,
                project=lambda e: (e - mean) @ components.T)
        )  # fmt: skip
    return DriftReport(tests)


def reference_statistics(
    image_stats: Mapping[str, np.ndarray],
    probabilities: np.ndarray,
    classes_: Sequence[str],
    embedding: np.ndarray,
    *,
    sample: int = 500,
    components: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """What monitoring compares against, computed once at registration: samples of the
    training images' statistics, the held-out predictions' confidence and class ratio, and a
    PCA of the held-out embeddings with a projected sample."""
    rng = np.random.default_rng(seed)

    def pick(n: int) -> np.ndarray:
        return np.sort(rng.choice(n, min(n, sample), replace=False))

    out: dict[str, Any] = {"sample": {}}
    for key, values in image_stats.items():
        values = np.asarray(values, dtype=np.float64)
        out["sample"][key] = np.round(values[pick(len(values))], 3).tolist()
    confidence = probabilities.max(axis=1)
    predicted = probabilities.argmax(axis=1)
    out["confidence_sample"] = np.round(confidence[pick(len(confidence))], 5).tolist()
    out["prediction_ratio"] = {c: float(np.mean(predicted == i)) for i, c in enumerate(classes_)}
    emb = np.asarray(embedding, dtype=np.float64)
    mean = emb.mean(axis=0)
    _, _, vt = np.linalg.svd(emb - mean, full_matrices=False)
    comps = vt[: min(components, vt.shape[0])]
    projected = (emb - mean) @ comps.T
    out["embedding_pca"] = {
        "mean": np.round(mean, 5).tolist(),
        "components": np.round(comps, 6).tolist(),
        "sample": np.round(projected[pick(len(projected))], 5).tolist(),
    }
    return out
