"""The drift statistics against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from kennel.evaluate import drift


def _direct_mmd(x: np.ndarray, y: np.ndarray) -> float:
    pooled = np.vstack([x, y])
    d = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1)
    k = np.exp(-d / np.median(d[np.triu_indices(len(pooled), 1)]))
    n, m = len(x), len(y)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def test_mmd_matches_the_definition_and_its_permutation_test_is_calibrated() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(80, 4)), rng.normal(size=(60, 4))
    same = drift.mmd("e", x, y, 0.05)
    assert same.statistic == pytest.approx(_direct_mmd(x, y), abs=1e-12)
    shifted = drift.mmd("e", x, y + 0.8, 0.05)
    assert shifted.p_value < 0.01 and shifted.drifted
    p_values = [drift.mmd("e", rng.normal(size=(50, 3)), rng.normal(size=(50, 3)), 0.05,
                          seed=s).p_value for s in range(40)]  # fmt: skip
    assert 0.3 < np.mean(p_values) < 0.7  # uniform-ish under the null
    assert np.mean(np.array(p_values) < 0.05) <= 0.15


def test_psi_and_ks() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(100, 10, 2000)
    assert drift.psi(ref, rng.normal(100, 10, 2000)) < 0.05
    assert drift.psi(ref, rng.normal(60, 10, 2000)) > 1.0
    constant = np.full(500, 200.0)
    assert drift.psi(constant, constant) == pytest.approx(0.0, abs=1e-3)
    test = drift.ks("x", ref, rng.normal(90, 10, 300), alpha=0.01, min_psi=0.1)
    assert test.drifted and test.p_value < 1e-6 and test.psi is not None
