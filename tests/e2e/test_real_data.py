"""The must-show flow on the real Kaggle photos (10,000 images; runs in CI)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kennel.datasets.synth import generate
from kennel.wiring import Workspace
from tests.conftest import make_project

pytestmark = pytest.mark.slow


def test_ten_thousand_real_photos(shared_data: Path, tmp_path: Path) -> None:
    ws = Workspace(make_project(tmp_path / "proj"))
    try:
        big = str(shared_data / "dogs-vs-cats-10k.zip")
        first = ws.ingestor().run(ws.source(big), "pets")
        v1 = first.version
        assert v1.counts == {
            "cat": {"test": 1000, "train": 4000},
            "dog": {"test": 1000, "train": 4000},
        }
        assert first.quarantined == {} and first.added == 10_000
        groups = v1.summary["exact_duplicates_sample"]
        assert first.exact_duplicate_groups == len(groups) >= 1
        assert [Path(u.split("::")[0]).name for u in groups[0]] == ["dog.2027.jpg", "dog.3082.jpg"]
        rows = ws.catalog.rows(v1)
        split_of = {r.uri: r.split for r in rows}
        for group in groups:  # identical bytes never straddle the split
            assert len({split_of[u] for u in group}) == 1

        again = ws.ingestor().run(ws.source(big), "pets")
        assert again.version.id == v1.id and not again.created

        mini = ws.ingestor().run(ws.source(str(shared_data / "dogs-vs-cats-mini.zip")), "pets")
        assert mini.added == 0 and mini.already_present == 200 and mini.version.id == v1.id

        fresh = generate(tmp_path / "fresh", 50, seed=99)
        shutil.copy(shared_data / "README.md", tmp_path / "fresh" / "README.md")
        child = ws.ingestor().run(ws.source(str(tmp_path / "fresh")), "pets")
        assert child.created and child.version.parent_id == v1.id and child.added == 50
        diff = ws.catalog.diff(v1, child.version)
        expected = {str((tmp_path / "fresh" / i.relpath).resolve()) for i in fresh}
        assert {r.uri for r in diff.added} == expected
        assert not diff.removed and not diff.resplit and not diff.relabelled
        assert {r.uri: r.split for r in ws.catalog.rows(child.version)} | split_of == {
            r.uri: r.split for r in ws.catalog.rows(child.version)
        }
    finally:
        ws.close()
