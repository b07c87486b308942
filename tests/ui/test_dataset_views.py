"""The Datasets page's diff: against a version's parent it reads the changes the version's
index kept at commit; against any other version it compares the two indexes; both say what
``kennel data diff`` says (no browser: a fresh project)."""

from __future__ import annotations

from dataclasses import replace

from kennel.datasets.manifest import Row
from kennel.ui.datasets import DIFF_ROWS, diff_view
from kennel.wiring import Workspace


def row(n: int, label: str = "cat") -> Row:
    return Row(f"/lake/{n:04d}.jpg", f"{n:064x}", label, "test" if n % 5 == 0 else "train",
               64, 48, 100.0, 20.0, 5.0, f"{n:016x}", "{}")  # fmt: skip


def test_a_diff_against_the_parent_reads_what_the_index_kept(workspace: Workspace) -> None:
    catalog = workspace.catalog
    catalog.ensure_dataset("pets")
    first = [row(n) for n in range(300)]
    second = [replace(r, label="dog") if n % 3 == 0 else r for n, r in enumerate(first[20:])]
    second += [row(n) for n in range(1000, 1070)]
    v1, _ = catalog.commit("pets", first, parent=None, ingest_run_id=None, summary={}, actor="t")
    v2, _ = catalog.commit("pets", second, parent=v1, ingest_run_id=None, summary={}, actor="t")
    a, b = catalog.index(v1), catalog.index(v2)
    assert b.changes is not None and b.changes_from == v1.id
    kept = diff_view(v1, a, b)
    computed = diff_view(v1, a, replace(b, changes=None))
    assert kept == computed
    whole = catalog.diff(v1, v2, limit=DIFF_ROWS)
    assert kept.counts == whole.counts == {"added": 70, "removed": 20, "relabelled": 94,
                                           "moved split": 0}  # fmt: skip
    assert [f.uri for f in kept.added] == [r.uri for r in whole.added] and len(kept.added) == 50
    assert [f.uri for f in kept.removed] == [r.uri for r in whole.removed]
    assert [(x.label, y.label, y.uri) for x, y in kept.relabelled] == [
        (x.label, y.label, y.uri) for x, y in whole.relabelled
    ]
    # the other way round there is nothing kept: the two indexes are compared
    back = diff_view(v2, b, a)
    assert back.counts == catalog.diff(v2, v1).counts and a.changes is None
