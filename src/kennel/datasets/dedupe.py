"""Exact duplicate groups (same bytes) and near-duplicate pairs (close perceptual hashes).

Near duplicates use the pigeonhole trick: split the 64-bit hash into ``distance + 1`` bands;
two hashes within ``distance`` bits agree exactly on at least one band, so only rows sharing a
band value are compared. Only pairs touching ``new`` rows are searched, so an append costs time
in proportion to what it adds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from itertools import pairwise

import numpy as np


def exact_groups(uris_by_sha: dict[str, list[str]]) -> list[list[str]]:
    return sorted(sorted(uris) for uris in uris_by_sha.values() if len(uris) > 1)


def _bands(distance: int) -> list[tuple[int, int]]:
    count = distance + 1
    edges = np.linspace(0, 64, count + 1).astype(int)
    return [(int(lo), int(hi)) for lo, hi in pairwise(edges)]


def near_pairs(
    hashes: Sequence[str], new: Sequence[bool], *, distance: int, max_pairs: int = 100_000
) -> list[tuple[int, int, int]]:
    """(i, j, bits) with i < j, distinct hashes within ``distance`` bits, one of them new."""
    if distance <= 0 or not hashes:
        return []
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    is_new = np.asarray(new, dtype=bool)
    found: set[tuple[int, int]] = set()
    pairs: list[tuple[int, int, int]] = []
    for lo, hi in _bands(distance):
        mask = np.uint64(((1 << (hi - lo)) - 1) << lo)
        keys = values & mask
        buckets: dict[int, list[int]] = defaultdict(list)
        for new_index in np.flatnonzero(is_new).tolist():
            buckets[int(keys[new_index])].append(new_index)
        if not buckets:
            continue
        members: dict[int, list[int]] = defaultdict(list)
        for index, key in enumerate(keys.tolist()):
            if key in buckets:
                members[key].append(index)
        for key, new_members in buckets.items():
            group = np.array(members[key])
            for i in new_members:
                bits = np.bitwise_count(values[group] ^ values[i])
                close = (bits > 0) & (bits <= distance)
                for j, b in zip(group[close].tolist(), bits[close].tolist(), strict=True):
                    if j != i:
                        pair = (min(i, j), max(i, j))
                        if pair not in found:
                            found.add(pair)
                            pairs.append((pair[0], pair[1], int(b)))
                            if len(pairs) >= max_pairs:
                                return pairs
    return pairs
