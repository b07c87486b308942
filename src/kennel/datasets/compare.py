"""Which files two dataset versions differ by: added, removed, relabelled or moved to another
split, matched by (uri, sha256). Computed on columns, from a manifest table or from a version's
index alike (``kennel.datasets.index``); what comes back is row positions, in file order, so the
caller builds rows only for what it shows: two 100,000-file versions compare in about 0.1 s."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kennel.datasets.manifest import contiguous


@dataclass(frozen=True)
class Columns:
    """One version's files in manifest order: what a comparison reads."""

    uri: pa.Array
    sha256: pa.Array
    label: pa.Array
    split: pa.Array


@dataclass(frozen=True)
class Changes:
    added: list[int]  # rows of b
    removed: list[int]  # rows of a
    relabelled: list[tuple[int, int]]  # (row of a, row of b)
    resplit: list[tuple[int, int]]
    counts: dict[str, int]  # files per kind of change, however many positions were kept


def of_table(table: pa.Table) -> Columns:
    return Columns(*(contiguous(table[c]) for c in ("uri", "sha256", "label", "split")))


def _keys(files: Columns) -> pa.Array:
    """Each file's (uri, sha256) as one string that sorts as the pair does."""
    return contiguous(pc.binary_join_element_wise(files.uri, files.sha256, "\x00"))


def _first(positions: np.ndarray, limit: int | None) -> list[int]:
    return [int(i) for i in positions[:limit]]


def changes(a: Columns, b: Columns, *, limit: int | None = None) -> Changes:
    """What changed from ``a`` to ``b``, each list cut to ``limit`` positions. Both are in
    manifest order, sorted by (uri, sha256) with each pair once (``manifest.to_table``), so
    rising positions are file order and one hash lookup finds the common files both ways."""
    keys_a, keys_b = _keys(a), _keys(b)
    at_a = pc.index_in(keys_b, value_set=keys_a)  # each b row's position in a, or null
    kept = pc.is_valid(at_a).to_numpy(zero_copy_only=False)
    common_b = np.flatnonzero(kept)
    common_a = at_a.filter(pc.is_valid(at_a)).to_numpy(zero_copy_only=False)
    removed = np.ones(len(keys_a), dtype=bool)
    removed[common_a] = False

    def changed(before: pa.Array, after: pa.Array) -> np.ndarray:
        old = before.take(pa.array(common_a, pa.int64()))
        new = after.take(pa.array(common_b, pa.int64()))
        return np.asarray(pc.not_equal(old, new).to_numpy(zero_copy_only=False), bool)

    relabelled, resplit = changed(a.label, b.label), changed(a.split, b.split)

    def a_of(j: int) -> int:  # the position in a of b's common row j
        return int(common_a[np.searchsorted(common_b, j)])

    return Changes(
        added=_first(np.flatnonzero(~kept), limit),
        removed=_first(np.flatnonzero(removed), limit),
        relabelled=[(a_of(j), j) for j in _first(common_b[relabelled], limit)],
        resplit=[(a_of(j), j) for j in _first(common_b[resplit], limit)],
        counts={
            "added": int((~kept).sum()),
            "removed": int(removed.sum()),
            "relabelled": int(relabelled.sum()),
            "moved split": int(resplit.sum()),
        },
    )


def additions(added: np.ndarray, *, limit: int | None = None) -> Changes:
    """The changes of a version made of its parent's files, unchanged, and new ones at rows
    ``added`` (in file order): what ``changes`` would find, without the lookup."""
    return Changes(
        added=_first(added, limit),
        removed=[],
        relabelled=[],
        resplit=[],
        counts={"added": len(added), "removed": 0, "relabelled": 0, "moved split": 0},
    )
