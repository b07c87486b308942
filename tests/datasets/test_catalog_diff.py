"""Comparing two dataset versions column by column gives what comparing their rows gives, cut
to a limit when asked; manifests read as tables are kept, within a byte budget."""

from __future__ import annotations

from dataclasses import replace

from kennel.datasets.manifest import Row
from kennel.datasets.versioning import DatasetCatalog
from kennel.wiring import Workspace


def row(n: int, label: str = "cat", split: str = "train") -> Row:
    return Row(f"/lake/{n:03d}.jpg", f"{n:064x}", label, split, 64, 48, 100.0 + n, 20.0, 5.0,
               f"{n:016x}", "{}")  # fmt: skip


def naive(rows_a: list[Row], rows_b: list[Row]) -> dict[str, list[object]]:
    """The diff as the catalog computed it before it read columns: row by row."""
    a, b = {r.key: r for r in rows_a}, {r.key: r for r in rows_b}
    common = a.keys() & b.keys()
    return {
        "added": sorted(b[k] for k in b.keys() - a.keys()),
        "removed": sorted(a[k] for k in a.keys() - b.keys()),
        "relabelled": sorted((a[k], b[k]) for k in common if a[k].label != b[k].label),
        "resplit": sorted((a[k], b[k]) for k in common if a[k].split != b[k].split),
    }


def test_diff_matches_a_row_by_row_comparison_and_cuts_to_a_limit(workspace: Workspace) -> None:
    catalog = workspace.catalog
    catalog.ensure_dataset("pets")
    first = [row(n) for n in range(40)]
    second = [
        *(replace(r, label="dog") if n % 5 == 0 else r for n, r in enumerate(first[:30])),
        *(replace(r, split="test") for r in first[30:35]),  # 30..34 move to test
        *(row(n) for n in range(100, 112)),  # 35..39 removed, 100..111 added
    ]
    second[1] = replace(second[1], label="dog", split="test")  # both at once
    v1, _ = catalog.commit("pets", first, parent=None, ingest_run_id=None, summary={}, actor="t")
    v2, _ = catalog.commit("pets", second, parent=v1, ingest_run_id=None, summary={}, actor="t")
    whole = catalog.diff(v1, v2)
    expected = naive(catalog.rows(v1), catalog.rows(v2))
    assert whole.added == expected["added"] and len(whole.added) == 12
    assert whole.removed == expected["removed"] and len(whole.removed) == 5
    assert whole.relabelled == expected["relabelled"] and len(whole.relabelled) == 7
    assert whole.resplit == expected["resplit"] and len(whole.resplit) == 6
    assert whole.counts == {"added": 12, "removed": 5, "relabelled": 7, "moved split": 6}
    cut = catalog.diff(v1, v2, limit=3)
    assert cut.counts == whole.counts
    assert cut.added == whole.added[:3] and cut.removed == whole.removed[:3]
    assert cut.relabelled == whole.relabelled[:3] and cut.resplit == whole.resplit[:3]
    assert catalog.diff(v2, v2).counts == {"added": 0, "removed": 0, "relabelled": 0,
                                           "moved split": 0}  # fmt: skip


def test_tables_are_kept_within_their_byte_budget(workspace: Workspace) -> None:
    catalog = workspace.catalog
    catalog.ensure_dataset("pets")
    v1, _ = catalog.commit("pets", [row(n) for n in range(10)], parent=None,
                           ingest_run_id=None, summary={}, actor="t")  # fmt: skip
    v2, _ = catalog.commit("pets", [row(n) for n in range(20)], parent=v1,
                           ingest_run_id=None, summary={}, actor="t")  # fmt: skip
    table = catalog.table(v1)
    assert table["uri"].to_pylist() == [r.uri for r in catalog.rows(v1)]
    assert catalog.table(v1) is table  # read once
    small = DatasetCatalog(workspace.db, workspace.content, cache_bytes=table.nbytes)
    kept = small.table(v1)
    small.table(v2)  # over the budget: the older one goes
    assert small.table(v1) is not kept
    assert small.table(v1).equals(kept)
