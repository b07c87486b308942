"""Exact duplicate groups (same bytes) and near-duplicate pairs (close perceptual hashes).

Near duplicates use the pigeonhole trick: split the 64-bit hash into ``distance + 1`` bands;
two hashes within ``distance`` bits agree exactly on at least one band, so only rows sharing a
band value are compared. Only pairs touching ``new`` rows are searched, and only among the rows
sharing a band value with one, so an append costs time in proportion to what it adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

_BLOCK = 1 << 16  # hash comparisons per numpy call in a wide group
_WIDE = 64  # rows sharing a band value beyond which a group is compared row by row


def exact_groups(uris_by_sha: dict[str, list[str]]) -> list[list[str]]:
    return sorted(sorted(uris) for uris in uris_by_sha.values() if len(uris) > 1)


def _bands(distance: int) -> list[tuple[int, int]]:
    count = distance + 1
    edges = np.linspace(0, 64, count + 1).astype(int)
    return [(int(lo), int(hi)) for lo, hi in pairwise(edges)]


def near_pairs(
    hashes: Sequence[str], new: Sequence[bool], *, distance: int, max_pairs: int = 100_000
) -> list[tuple[int, int, int]]:
    """(i, j, bits) with i < j, distinct hashes within ``distance`` bits, one of them new;
    sorted by (i, j). At most ``max_pairs`` (the search stops once it has found that many)."""
    if distance <= 0 or not hashes:
        return []
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    is_new = np.asarray(new, dtype=bool)
    found: list[np.ndarray] = []
    for lo, hi in _bands(distance):
        if sum(f.shape[1] for f in found) >= max_pairs:
            break
        mask = np.uint64(((1 << (hi - lo)) - 1) << lo)
        keys = values & mask
        # only rows sharing a band value with a new row can pair with one: search just those
        # (the same groups in the same order, so the same pairs, even when cut at max_pairs)
        near = np.flatnonzero(np.isin(keys, keys[is_new]))
        if len(near) < 2:
            continue
        for i, j, bits in _band_pairs(values[near], is_new[near], keys[near], distance, max_pairs):
            found.append(np.stack([near[i], near[j], bits]))
    if not found:
        return []
    i, j, bits = np.concatenate(found, axis=1)
    # a pair agreeing on several bands was found once per band
    unique = np.unique(i * np.int64(len(values)) + j)[:max_pairs]
    i, j = np.divmod(unique, np.int64(len(values)))
    bits = np.bitwise_count(values[i] ^ values[j])
    return list(zip(i.tolist(), j.tolist(), bits.tolist(), strict=True))


def _band_pairs(
    values: np.ndarray, is_new: np.ndarray, keys: np.ndarray, distance: int, enough: int
) -> list[np.ndarray]:
    """Arrays (i, j, bits) of the pairs of rows whose keys agree, one row new, within
    ``distance`` bits; i < j. Rows are compared within a group of equal keys, all at once:
    the k-th row of each group with its (k + d)-th, for each d (vector operations per d, not
    per row); a group larger than ``_WIDE`` (many near-identical images) goes by blocks of
    its new rows. Stops once ``enough`` pairs are found."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    with_new = np.add.reduceat(is_new[order].astype(np.int64), starts) > 0
    wanted = with_new & (sizes > 1)
    group_of = np.repeat(np.arange(len(starts)), sizes)
    out: list[np.ndarray] = []
    kept = [0]  # pairs in out

    def keep(a: np.ndarray, b: np.ndarray) -> bool:
        either = is_new[a] | is_new[b]
        a, b = a[either], b[either]
        bits = np.bitwise_count(values[a] ^ values[b])
        close = (bits > 0) & (bits <= distance)
        if close.any():
            a, b = a[close], b[close]
            out.append(np.stack([np.minimum(a, b), np.maximum(a, b), bits[close].astype(np.int64)]))
            kept[0] += len(a)
        return kept[0] >= enough

    narrow = wanted & (sizes <= _WIDE)
    positions = np.flatnonzero(narrow[group_of])  # sorted positions in narrow groups
    ends = (starts + sizes)[group_of]
    for d in range(1, int(sizes[narrow].max()) if narrow.any() else 1):
        positions = positions[positions + d < ends[positions]]
        if not len(positions):
            break
        if keep(order[positions], order[positions + d]):
            return out
    for g in np.flatnonzero(wanted & (sizes > _WIDE)).tolist():
        group = order[starts[g] : starts[g] + sizes[g]]
        fresh = group[is_new[group]]
        step = max(1, _BLOCK // len(group))
        for first in range(0, len(fresh), step):
            block = fresh[first : first + step]
            a = np.repeat(block, len(group))
            b = np.tile(group, len(block))
            if keep(a, b):
                return out
    return out
