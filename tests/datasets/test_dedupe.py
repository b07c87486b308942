from __future__ import annotations

import itertools

import numpy as np
import pytest

from kennel.datasets.dedupe import exact_groups, hash_values, near_pairs


def test_near_pairs_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    base = [int(x) for x in rng.integers(0, 2**63, 300, dtype=np.int64)]
    hashes = [f"{h:016x}" for h in base]
    for k in range(40):  # plant close relatives: flip 1..6 bits
        bits = rng.choice(64, size=1 + k % 6, replace=False)
        value = base[k]
        for b in bits:
            value ^= 1 << int(b)
        hashes.append(f"{value:016x}")
    new = [i >= 150 for i in range(len(hashes))]
    found = {(i, j) for i, j, _b in near_pairs(hashes, new, distance=4)}
    ints = [int(h, 16) for h in hashes]
    expected = {
        (i, j)
        for i, j in itertools.combinations(range(len(ints)), 2)
        if bin(ints[i] ^ ints[j]).count("1") <= 4 and (new[i] or new[j])
    }
    assert expected and found == expected


def test_exact_groups() -> None:
    assert exact_groups({"a": ["x", "y"], "b": ["z"]}) == [["x", "y"]]


def test_near_pairs_sorted_and_capped() -> None:
    # 64 one-bit hashes and zero: every two of them are within 2 bits (2,080 pairs)
    hashes = [f"{1 << k:016x}" for k in range(64)] + ["0" * 16]
    every = near_pairs(hashes, [True] * len(hashes), distance=4)
    assert len(every) == 64 * 63 // 2 + 64
    assert every == sorted(every)
    assert all(bits == (1 if j == 64 else 2) for _i, j, bits in every)
    assert len(near_pairs(hashes, [True] * len(hashes), distance=4, max_pairs=10)) == 10


def test_near_pairs_in_a_wide_group_of_identical_hashes() -> None:
    # 200 pictures with one hash and one close relative of them
    hashes = ["00000000000000ff"] * 200 + ["00000000000000fe"]
    new = [False] * 200 + [True]
    assert near_pairs(hashes, new, distance=4) == [(i, 200, 1) for i in range(200)]
    # the same hash is the closest pair there is, unless the two files hold the same bytes
    first_new = [True] + [False] * 200
    every = [(0, j, 0) for j in range(1, 200)] + [(0, 200, 1)]
    assert near_pairs(hashes, first_new, distance=4) == every
    copies = np.array([0] * 200 + [-1])  # rows 0-199 are one content
    assert near_pairs(hashes, first_new, distance=4, copies=copies) == [(0, 200, 1)]


def test_near_pairs_match_brute_force_whatever_few_rows_are_new() -> None:
    # appends: a few new rows among many old, clusters of relatives, a crowd of near-zero
    # hashes (groups wider than a block), and sets with no new row at all
    rng = np.random.default_rng(11)
    for trial in range(60):
        n = int(rng.integers(0, 300))
        roots = [int(x) for x in rng.integers(0, 2**63, max(1, n // 6), dtype=np.int64)]
        ints = []
        for _ in range(n):
            value = roots[int(rng.integers(len(roots)))]
            for b in rng.choice(64, size=int(rng.integers(0, 5)), replace=False):
                value ^= 1 << int(b)
            ints.append(int(rng.integers(0, 8)) if rng.random() < 0.3 else value)
        share = [0.0, 0.02, 0.5][trial % 3]
        new = [bool(x) for x in rng.random(n) < share]
        found = near_pairs([f"{h:016x}" for h in ints], new, distance=3)
        expected = [
            (i, j, bin(ints[i] ^ ints[j]).count("1"))
            for i, j in itertools.combinations(range(n), 2)
            if bin(ints[i] ^ ints[j]).count("1") <= 3 and (new[i] or new[j])
        ]
        assert found == expected, trial


def _brute_force(
    ints: np.ndarray, new: np.ndarray, distance: int, copies: np.ndarray | None = None
) -> list[tuple[int, int, int]]:
    i, j = np.triu_indices(len(ints), k=1)
    bits = np.bitwise_count(ints[i] ^ ints[j])
    keep = (bits <= distance) & (new[i] | new[j])
    if copies is not None:
        keep &= (copies[i] != copies[j]) | (copies[i] < 0)
    return list(zip(i[keep].tolist(), j[keep].tolist(), bits[keep].tolist(), strict=True))


def test_near_pairs_match_brute_force_with_copies_and_crowds() -> None:
    """Pictures present several times (copies share a hash), crowds of close hashes wider
    than a group compared pair by pair, and from all rows new (a first ingest) to a few (an
    append): the same pairs as comparing every two rows."""
    rng = np.random.default_rng(23)
    roots = rng.integers(0, 2**63, 120, dtype=np.int64).astype(np.uint64)
    crowd = np.arange(90, dtype=np.uint64)  # 90 hashes within a few bits of zero
    ints = np.concatenate([np.repeat(roots, 8), crowd, roots[:40] ^ np.uint64(0b1011)])
    rng.shuffle(ints)
    # some of the repeated hashes are files holding the same bytes (exact duplicates)
    copies = np.where(rng.random(len(ints)) < 0.5, np.searchsorted(np.unique(ints), ints), -1)
    for share in (1.0, 0.5, 0.05, 0.01):
        new = rng.random(len(ints)) < share
        hashes = [f"{int(h):016x}" for h in ints]
        assert near_pairs(hashes, new.tolist(), distance=4) == _brute_force(ints, new, 4), share
        found = near_pairs(hashes, new.tolist(), distance=4, copies=copies)
        assert found == _brute_force(ints, new, 4, copies), share


def test_hash_values_read_hashes_as_int_does() -> None:
    hashes = ["00000000000000ff", "FFFFFFFFFFFFFFFF", "0123456789abcdef", "8000000000000000"]
    assert hash_values(hashes).tolist() == [int(h, 16) for h in hashes]
    # other text as int() reads it: lengths that add up to whole hashes, blanks, a prefix
    odd = ["0" * 15, "0" + "1" * 16, "0x00000000000001", " 00000000000002 "]
    assert hash_values(odd).tolist() == [int(h, 16) for h in odd]
    with pytest.raises(ValueError):
        hash_values(["not a hash at all"])


def test_near_pairs_count_each_pair_once_against_the_cap() -> None:
    """A cap of exactly the pairs there are gives them all: two new rows of a group where new
    rows meet every row, and two hashes agreeing on several bands, are each one pair."""
    base, bit = 0x12345678, [1 << k for k in range(64)]
    ints = [base, base ^ bit[32], base ^ bit[32] ^ bit[33], base ^ bit[40] ^ bit[41] ^ bit[42],
            base ^ bit[50] ^ bit[51] ^ bit[52], 0xABCD000000000F00, 0xABCD000000000F01]  # fmt: skip
    new = [False, True, True, False, False, False, True]
    hashes = [f"{v:016x}" for v in ints]
    assert near_pairs(hashes, new, distance=1, max_pairs=3) == [(0, 1, 1), (1, 2, 1), (5, 6, 1)]
    # one bit apart: the two agree on every band but one (bands 0 and 1 at distance 2)
    twins = [
        0x1111000000000000,
        0x1111000000000000 ^ bit[60],
        0x0F0F00F0,
        0x0F0F00F0 ^ bit[1] ^ bit[30],
    ]
    hashes = [f"{v:016x}" for v in twins]
    assert near_pairs(hashes, [True, False, True, False], distance=2, max_pairs=2) == [
        (0, 1, 1),
        (2, 3, 2),
    ]


def test_a_capped_search_returns_as_many_true_pairs_as_the_cap() -> None:
    rng = np.random.default_rng(31)
    for trial in range(80):
        roots = rng.integers(0, 2**63, 12, dtype=np.int64).astype(np.uint64)
        flips = rng.integers(0, 64, (240, 3)).astype(np.uint64)
        ints = np.repeat(roots, 20)
        for k in range(int(rng.integers(0, 4))):
            ints ^= np.uint64(1) << flips[:, k]
        new = rng.random(len(ints)) < [0.02, 0.3, 1.0][trial % 3]
        everything = _brute_force(ints, new, 4)
        cap = int(rng.integers(1, max(2, len(everything) + 5)))
        found = near_pairs(
            [f"{int(h):016x}" for h in ints], new.tolist(), distance=4, max_pairs=cap
        )
        assert len(found) == min(cap, len(everything)), trial
        assert found == sorted(set(found)) and set(found) <= set(everything), trial
