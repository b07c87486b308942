"""Deterministic, stratified, append-stable train/validation/test assignment.

The unit is a content hash, so identical files never straddle splits. Within each label, units
are ranked by a seeded hash; new units fill whichever split is short of its target share of the
label's total, in rank order. Units already assigned (the parent version's) never move, so
appending data changes no earlier item's side, and a fresh ingest of the same items always gives
the same split.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Mapping


def rank_key(sha256: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()


def assign(
    existing: Mapping[str, tuple[str, str]],
    new_units: Mapping[str, str],
    *,
    test: float,
    validation: float,
    seed: int,
) -> dict[str, str]:
    """Splits for ``new_units`` (sha256 -> label) given ``existing`` (sha256 -> (label, split))."""
    have: dict[str, Counter[str]] = defaultdict(Counter)
    for label, split in existing.values():
        have[label][split] += 1
    return assign_counted(have, new_units, test=test, validation=validation, seed=seed)


def assign_counted(
    have: Mapping[str, Mapping[str, int]],
    new_units: Mapping[str, str],
    *,
    test: float,
    validation: float,
    seed: int,
) -> dict[str, str]:
    """``assign`` given only how many existing units each label has in each split."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for sha, label in new_units.items():
        by_label[label].append(sha)

    result: dict[str, str] = {}
    for label, shas in by_label.items():
        counts = have.get(label, {})
        total = sum(counts.values()) + len(shas)
        need_test = max(0, round(total * test) - counts.get("test", 0))
        need_val = max(0, round(total * validation) - counts.get("validation", 0))
        for i, sha in enumerate(sorted(shas, key=lambda s: rank_key(s, seed))):
            if i < need_test:
                result[sha] = "test"
            elif i < need_test + need_val:
                result[sha] = "validation"
            else:
                result[sha] = "train"
    return result
