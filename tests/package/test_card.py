"""The model card is Markdown that a label cannot break out of: labels are data (a manifest
may give any text), so none of it becomes HTML, a table cell or a terminal escape."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from kennel.package.bundle import BundleMetadata, card

EVIL = "<img src=x onerror=alert(1)>\x1b[31m"
PIPE = "a|b"


def _meta(labels: list[str], reasons: list[str]) -> BundleMetadata:
    scores = SimpleNamespace(precision=0.9, recall=0.8, f1=0.85, support=10)
    metrics = SimpleNamespace(per_class={label: scores for label in labels}, accuracy=0.9,
                              n=20, recall_gap=0.1)  # fmt: skip
    meta: Any = SimpleNamespace(
        name="pets", version=1, labels=tuple(labels), metrics=metrics,
        gates=SimpleNamespace(passed=not reasons, reasons=reasons),
        params=SimpleNamespace(arch="small_cnn"), image_size=64, dataset="d",
        dataset_version="0" * 64, run_id="r", git_commit=None, temperature=1.0,
        frame={"policy": "tiles"}, ood={"method": "embedding"},
    )  # fmt: skip
    return cast(BundleMetadata, meta)


def test_labels_are_shown_literally_in_the_card() -> None:
    text = card(_meta([EVIL, PIPE, "golden_retriever"], [f"recall[{EVIL}] 0.1 < 0.5"]))
    assert "<img" not in text and "\x1b" not in text  # no HTML, no escape byte
    assert "&#60;img src=x onerror=alert(1)&#62;" in text and "&#92;x1b" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "0.9000" in line]
    assert len(rows) == 3 and all(row.count("|") == 6 for row in rows)  # no cell split by a |
    assert "a&#124;b" in text and "golden_retriever" in text
    plain = card(_meta(["cat", "dog"], []))
    assert "Classifies an image as one of: cat, dog." in plain and "Passed." in plain
