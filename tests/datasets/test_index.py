"""A version's index: stored when the version is committed, read back equal to one built from
the manifest, and what it says is the manifest's (codes, slices, quality, duplicates); two
indexes compare as the manifests do."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from kennel.datasets import compare
from kennel.datasets import index as version_index
from kennel.datasets.manifest import Row, attrs_json, to_table
from kennel.wiring import Workspace

CAMERAS = ("gate", "pond")


def row(n: int, **attrs: Any) -> Row:
    label = "dog" if n % 3 == 0 else "cat"
    return Row(f"/lake/{n:03d}.jpg", f"{n % 37:064x}", label, "test" if n % 5 == 0 else "train",
               64 + n, 48, 100.0 + n / 7, 20.0 + n % 4, 5.0 * n, f"{n:016x}",
               attrs_json(attrs))  # fmt: skip


def rows() -> list[Row]:
    """40 files: 3 identical-content groups; a camera slice (one file lacks it), a night
    date that looks like a timestamp, and a per-file index that is no slice."""
    out = []
    for n in range(40):
        attrs = {"camera": CAMERAS[n % 2], "index": str(n), "night": "2026-11-0" + str(1 + n % 2)}
        if n == 7:
            del attrs["camera"]
        out.append(row(n, **attrs))
    return out


def same(a: version_index.VersionIndex, b: version_index.VersionIndex) -> None:
    assert a.uri.equals(b.uri) and a.sha256.equals(b.sha256)
    assert (a.labels, a.splits) == (b.labels, b.splits)
    assert np.array_equal(a.label_codes, b.label_codes)
    assert np.array_equal(a.split_codes, b.split_codes)
    assert a.slices.keys() == b.slices.keys()
    for key, (values, codes) in a.slices.items():
        assert values == b.slices[key][0] and np.array_equal(codes, b.slices[key][1])
    assert a.quality.keys() == b.quality.keys()
    assert all(np.array_equal(v, b.quality[k]) for k, v in a.quality.items())
    assert (a.duplicates, a.duplicate_groups) == (b.duplicates, b.duplicate_groups)
    assert (a.changes_from, a.changes) == (b.changes_from, b.changes)


def test_an_index_says_what_the_manifest_says() -> None:
    manifest = to_table(rows())
    index = version_index.build(manifest)
    ordered = sorted(rows(), key=lambda r: r.key)
    assert index.rows == 40
    assert [index.label_of(i) for i in range(40)] == [r.label for r in ordered]
    assert [index.split_of(i) for i in range(40)] == [r.split for r in ordered]
    assert index.labels == ("cat", "dog") and index.splits == ("test", "train")
    assert set(index.slices) == {"camera", "night"}  # index: unique per file, not a slice
    values, codes = index.slices["camera"]
    assert values == ("", "gate", "pond")
    assert [values[c] for c in codes] == [json.loads(r.attrs).get("camera", "") for r in ordered]
    assert index.slices["night"][0] == ("2026-11-01", "2026-11-02")  # text, not a timestamp
    assert np.array_equal(index.quality["side"], [min(r.width, r.height) for r in ordered])
    assert np.array_equal(index.quality["sharpness"], [r.sharpness for r in ordered])
    groups: dict[str, list[str]] = {}
    for r in ordered:
        groups.setdefault(r.sha256, []).append(r.uri)
    repeated = sorted((s, sorted(u)) for s, u in groups.items() if len(u) > 1)
    assert index.duplicates == repeated[:20] and index.duplicate_groups == len(repeated) == 3
    same(version_index.from_bytes(version_index.to_bytes(index)), index)


def test_attributes_that_are_not_all_text_are_read_one_by_one() -> None:
    legacy = [replace(r, attrs=json.dumps({"camera": CAMERAS[n % 2], "shift": n % 2}))
              for n, r in enumerate(rows())]  # fmt: skip
    index = version_index.build(to_table(legacy))
    assert index.slices["shift"][0] == ("0", "1") and index.slices["camera"][0] == CAMERAS


def test_a_stored_index_from_another_format_is_refused() -> None:
    index = version_index.build(to_table(rows()))
    data = version_index.to_bytes(index).replace(b'"format": 1', b'"format": 9')
    with pytest.raises(ValueError, match="format 9"):
        version_index.from_bytes(data)


def test_the_catalog_stores_an_index_at_commit_and_compares_indexes(workspace: Workspace) -> None:
    catalog = workspace.catalog
    catalog.ensure_dataset("pets")
    first = rows()
    second = [replace(r, label="dog") if n % 4 == 1 else r for n, r in enumerate(first[5:])]
    second += [row(n, camera="gate") for n in range(100, 104)]
    v1, _ = catalog.commit("pets", first, parent=None, ingest_run_id=None, summary={}, actor="t")
    v2, _ = catalog.commit("pets", second, parent=v1, ingest_run_id=None, summary={}, actor="t")
    stored = catalog.store.get("pets", v1.id)
    assert v1.index_sha256 is not None and stored is not None
    assert stored.index_sha256 == v1.index_sha256
    same(catalog.index(v1), version_index.build(catalog.table(v1)))
    built = version_index.since(version_index.build(catalog.table(v2)), v1.id, catalog.index(v1))
    same(catalog.index(v2), built)
    # a version committed before indexes were stored: built from its manifest when asked
    same(catalog.index(replace(v1, index_sha256=None)), catalog.index(v1))
    a, b = catalog.index(v1), catalog.index(v2)
    found = compare.changes(a.columns(), b.columns(), limit=3)
    whole = catalog.diff(v1, v2, limit=3)
    assert found.counts == whole.counts
    assert (whole.counts["added"], whole.counts["removed"]) == (4, 5)
    assert whole.counts["relabelled"] > 3 and len(found.relabelled) == 3
    assert [str(b.uri[j]) for j in found.added] == [r.uri for r in whole.added]
    assert [str(a.uri[i]) for i in found.removed] == [r.uri for r in whole.removed]
    relabelled = [(a.label_of(i), b.label_of(j)) for i, j in found.relabelled]
    assert relabelled == [(x.label, y.label) for x, y in whole.relabelled]
    # v2's index keeps its changes since v1, the parent it was committed with
    assert a.changes is None and b.changes_from == v1.id
    assert b.changes == compare.changes(a.columns(), b.columns(), limit=100)
    assert b.changes is not None and b.changes.counts == whole.counts
