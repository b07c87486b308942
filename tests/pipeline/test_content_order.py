"""The same files give the same model, whatever they are named: a plan trains on its rows in
content order (the retrained demo model, trained on production images named by random
prediction ids, came out differently each run, and the night was won back or not by luck)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, cast

from kennel.config import TrainConfig
from kennel.datasets.manifest import Row, by_key
from kennel.pipeline.steps import prepare


def _rows(names: list[str]) -> list[Row]:
    rows = []
    for i, name in enumerate(names):
        sha = hashlib.sha256(str(i).encode()).hexdigest()
        label, split = ("cat", "dog")[i % 2], ("train", "train", "test")[i % 3]
        rows.append(Row(name, sha, label, split, 8, 8, 1.0, 1.0, 1.0, "0" * 16, "{}"))
    return rows


def test_a_plan_is_in_content_order_whatever_the_names() -> None:
    version = cast(Any, SimpleNamespace(ref="park@v1", id="0" * 64))
    config = TrainConfig()
    named = _rows([f"lake/{i:03d}.jpg" for i in range(60)])
    renamed = [replace(r, uri=f"feedback/{random.Random(i).random()}") for i, r in enumerate(named)]
    random.Random(3).shuffle(renamed)
    a = prepare.plan(version, named, config, ["cat", "dog"])
    b = prepare.plan(version, sorted(renamed, key=by_key), config, ["cat", "dog"])
    assert [r.sha256 for r in a.rows] == sorted(r.sha256 for r in named)
    assert [r.sha256 for r in a.rows] == [r.sha256 for r in b.rows]
    for part in ("train", "validation", "test"):
        assert getattr(a.splits, part).tolist() == getattr(b.splits, part).tolist()


def test_a_balance_column_no_training_image_has_is_refused_before_a_run() -> None:
    """A retrain weights the alert's window by its images; when all of them fell in the test
    split, training failed after its run was recorded, and the retrain stayed blocked."""
    import json

    import pytest

    version = cast(Any, SimpleNamespace(ref="park@v2", id="0" * 64))
    rows = _rows([f"lake/{i:03d}.jpg" for i in range(60)])
    window = json.dumps({"window": "alert"})
    only_tested = [replace(r, attrs=window) if r.split == "test" else r for r in rows]
    config = TrainConfig(balance_by="window")
    with pytest.raises(prepare.NothingToBalance, match="no training image of park@v2"):
        prepare.plan(version, only_tested, config, ["cat", "dog"])
    some_trained = [replace(r, attrs=window) for r in rows]
    assert prepare.plan(version, some_trained, config, ["cat", "dog"]).config.balance_by
