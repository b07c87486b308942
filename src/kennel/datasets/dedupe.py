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

_BLOCK = 1 << 16  # hash comparisons per numpy call where new rows meet all of their group
_WIDE = 64  # rows sharing a band value beyond which a group's new rows meet all its rows
_DIGITS = 16  # a hash's hex digits


def exact_groups(uris_by_sha: dict[str, list[str]]) -> list[list[str]]:
    return sorted(sorted(uris) for uris in uris_by_sha.values() if len(uris) > 1)


def _bands(distance: int) -> list[tuple[int, int]]:
    count = distance + 1
    edges = np.linspace(0, 64, count + 1).astype(int)
    return [(int(lo), int(hi)) for lo, hi in pairwise(edges)]


def near_pairs(
    hashes: Sequence[str],
    new: Sequence[bool] | np.ndarray,
    *,
    distance: int,
    max_pairs: int = 100_000,
    copies: np.ndarray | None = None,
) -> list[tuple[int, int, int]]:
    """(i, j, bits) with i < j, rows whose hashes are within ``distance`` bits (0 included: a
    picture saved again, its bytes new, hashes the same), one of them new; sorted by (i, j).
    ``copies``: rows holding the same bytes share a number (0 or more; -1 for a row whose
    bytes no other row holds): exact duplicates, reported as such, never as a near pair.
    At most ``max_pairs``: the search stops once it has found that many distinct pairs (each
    pair is found once, in the first band its two hashes agree on). ``distance`` 0: none."""
    if distance <= 0 or not hashes:
        return []
    values = hash_values(hashes)
    is_new = np.asarray(new, dtype=bool)
    found: list[np.ndarray] = []
    searched: list[np.uint64] = []  # the bits of the bands searched so far
    for lo, hi in _bands(distance):
        have = sum(f.shape[1] for f in found)
        if have >= max_pairs:
            break
        # the band's bits as a small number: np.isin then looks them up in a table
        keys = (values >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        # only rows sharing a band value with a new row can pair with one: search just those
        near = np.flatnonzero(np.isin(keys, keys[is_new]))
        if len(near) >= 2:
            held = None if copies is None else copies[near]
            pairs = _band_pairs(
                values[near], is_new[near], keys[near], distance, max_pairs - have, searched, held
            )
            found.extend(np.stack([near[i], near[j], bits]) for i, j, bits in pairs)
        searched.append(np.uint64(((1 << (hi - lo)) - 1) << lo))
    if not found:
        return []
    i, j, bits = np.concatenate(found, axis=1)
    unique = np.unique(i * np.int64(len(values)) + j)[:max_pairs]  # sorted by (i, j)
    i, j = np.divmod(unique, np.int64(len(values)))
    bits = np.bitwise_count(values[i] ^ values[j])
    return list(zip(i.tolist(), j.tolist(), bits.tolist(), strict=True))


def hash_values(hashes: Sequence[str]) -> np.ndarray:
    """The hashes (16 hex digits each) as 64-bit integers, all decoded as one text (a parse
    per hash took a fifth of a 1 % append's search); any other text as ``int(h, 16)`` reads
    it, so a bad hash fails as it always did."""
    try:
        raw = bytes.fromhex("".join(hashes))
    except (ValueError, TypeError):
        raw = b""
    # 8 bytes a hash: no digit skipped (fromhex skips blanks) and none of another length
    if len(raw) == 8 * len(hashes) and set(map(len, hashes)) == {_DIGITS}:
        return np.frombuffer(raw, dtype=">u8").astype(np.uint64)
    return np.array([int(h, 16) for h in hashes], dtype=np.uint64)


def _band_pairs(
    values: np.ndarray,
    is_new: np.ndarray,
    keys: np.ndarray,
    distance: int,
    enough: int,
    searched: Sequence[np.uint64] = (),
    copies: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Arrays (i, j, bits) of the pairs of rows whose keys agree, one row new, within
    ``distance`` bits; i < j. Rows are compared within a group of equal keys, all at once. In
    a group whose rows are mostly new (a first ingest), the k-th row of each group meets its
    (k + d)-th, for each d (vector operations per d, not per row). A group with few new rows
    (an append), or wider than ``_WIDE`` (many near-identical images), has its new rows meet
    all of its rows instead, in blocks of about ``_BLOCK`` comparisons: fewer comparisons,
    and none between two old rows. A pair whose hashes agree on a band in ``searched`` (bit
    masks) was found there and is left out, and each pair of two new rows is kept from one
    side only, so every pair is counted once. Stops once ``enough`` pairs are found."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    fresh_count = np.add.reduceat(is_new[order].astype(np.int64), starts)
    wanted = (fresh_count > 0) & (sizes > 1)
    # new rows meet all of their group: fewer comparisons than all pairs when few are new
    wide = sizes > _WIDE
    by_fresh = wanted & (wide | (2 * fresh_count < sizes))
    group_of = np.repeat(np.arange(len(starts)), sizes)
    out: list[np.ndarray] = []
    kept = [0]  # pairs in out

    def keep(a: np.ndarray, b: np.ndarray, wanted: np.ndarray) -> bool:
        a, b = a[wanted], b[wanted]
        xor = values[a] ^ values[b]
        bits = np.bitwise_count(xor)
        close = np.flatnonzero(bits <= distance)
        if copies is not None:  # the same bytes: an exact duplicate, not a near one
            mine, theirs = copies[a[close]], copies[b[close]]
            close = close[(mine != theirs) | (mine < 0)]
        for mask in searched:  # agreeing on an earlier band: found there already
            close = close[(xor[close] & mask) != 0]
        if len(close):
            a, b = a[close], b[close]
            out.append(np.stack([np.minimum(a, b), np.maximum(a, b), bits[close].astype(np.int64)]))
            kept[0] += len(a)
        return kept[0] >= enough

    def once(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """New rows ``a`` meeting rows ``b`` of their group: two new rows meet twice, kept
        from the first of them."""
        return np.asarray(~is_new[b] | (a < b))

    narrow = wanted & ~by_fresh
    positions = np.flatnonzero(narrow[group_of])  # sorted positions in those groups
    ends = (starts + sizes)[group_of]
    for d in range(1, int(sizes[narrow].max()) if narrow.any() else 1):
        positions = positions[positions + d < ends[positions]]
        if not len(positions):
            break
        a, b = order[positions], order[positions + d]
        if keep(a, b, is_new[a] | is_new[b]):  # one of them new
            return out
    # a narrow group's few new rows, each against every row of its group: all such groups
    # in blocks of about _BLOCK comparisons (one numpy call per block, not per group)
    fresh = np.flatnonzero(is_new[order] & (by_fresh & ~wide)[group_of])  # sorted positions
    compared, first = sizes[group_of[fresh]], starts[group_of[fresh]]
    blocks = np.flatnonzero(np.diff((np.cumsum(compared) - 1) // _BLOCK)) + 1
    for rows in np.split(np.arange(len(fresh)), blocks) if len(fresh) else []:
        counts = compared[rows]
        a = np.repeat(order[fresh[rows]], counts)
        # row k's comparisons are its group's positions first[k] .. first[k] + counts[k] - 1
        b = order[np.arange(len(a)) + np.repeat(first[rows] - (np.cumsum(counts) - counts), counts)]
        if keep(a, b, once(a, b)):
            return out
    # a wide group's new rows, each against every row of it, by blocks of new rows
    for g in np.flatnonzero(wanted & wide).tolist():
        group = order[starts[g] : starts[g] + sizes[g]]
        new_rows = group[is_new[group]]
        step = max(1, _BLOCK // len(group))
        for lo in range(0, len(new_rows), step):
            block = new_rows[lo : lo + step]
            a, b = np.repeat(block, len(group)), np.tile(group, len(block))
            if keep(a, b, once(a, b)):
                return out
    return out
