"""train.balance_by: every value of a manifest column gets an equal share of each epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kennel.config import TrainConfig
from kennel.datasets.manifest import Row
from kennel.errors import TrainingError
from kennel.train.data import ImageSet, balanced_weights, column
from kennel.train.trainer import Trainer


def _row(i: int, label: str, attrs: dict[str, str]) -> Row:
    return Row(f"img/{i}.jpg", f"{i:064x}", label, "train", 32, 32, 100.0, 40.0, 10.0,
               "0" * 16, json.dumps(attrs, sort_keys=True))  # fmt: skip


def test_column_reads_labels_and_source_columns() -> None:
    rows = [_row(0, "cat", {"window": "alert"}), _row(1, "dog", {}), _row(2, "cat", {})]
    idx = np.array([2, 0, 1])
    assert list(column(rows, idx, "label")) == ["cat", "cat", "dog"]
    assert list(column(rows, idx, "window")) == ["", "alert", ""]


def test_balanced_draws_give_each_group_an_equal_share() -> None:
    groups = np.array([""] * 900 + ["before"] * 80 + ["alert"] * 20, dtype=object)
    weights = balanced_weights(groups)
    assert weights.sum() == pytest.approx(1.0)
    draws = torch.multinomial(torch.from_numpy(weights), 30_000, True,
                              generator=torch.Generator().manual_seed(0)).numpy()  # fmt: skip
    shares = {g: float(np.mean(groups[draws] == g)) for g in ("", "before", "alert")}
    assert all(abs(share - 1 / 3) < 0.02 for share in shares.values()), shares


def test_training_balances_and_names_a_missing_column(tmp_path: Path) -> None:
    rows = tuple(_row(i, "cat" if i % 2 else "dog", {"window": "alert"} if i < 4 else {})
                 for i in range(24))  # fmt: skip
    images = np.random.default_rng(0).integers(0, 255, (24, 32, 32, 3), dtype=np.uint8)
    data = ImageSet(images, np.array([i % 2 for i in range(24)]), np.array(["train"] * 24),
                    rows, ("dog", "cat"))  # fmt: skip
    train, val = np.arange(20), np.arange(20, 24)
    cfg = TrainConfig(image_size=32, epochs=1, batch_size=8, balance_by="window")
    fit = Trainer(cfg, data, train, val, tmp_path / "a").fit()
    assert fit.epochs_run == 1
    missing = cfg.model_copy(update={"balance_by": "camera"})
    with pytest.raises(TrainingError, match="'camera'"):
        Trainer(missing, data, train, val, tmp_path / "b").fit()
