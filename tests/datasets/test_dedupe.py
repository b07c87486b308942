from __future__ import annotations

import itertools

import numpy as np

from kennel.datasets.dedupe import exact_groups, near_pairs


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
        if 0 < bin(ints[i] ^ ints[j]).count("1") <= 4 and (new[i] or new[j])
    }
    assert expected and found == expected


def test_exact_groups() -> None:
    assert exact_groups({"a": ["x", "y"], "b": ["z"]}) == [["x", "y"]]
