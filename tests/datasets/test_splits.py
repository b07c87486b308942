from __future__ import annotations

import hashlib

from kennel.datasets.splits import assign


def _units(n: int, label: str, salt: str = "") -> dict[str, str]:
    return {hashlib.sha256(f"{label}{salt}{i}".encode()).hexdigest(): label for i in range(n)}


def _count(splits: dict[str, str], units: dict[str, str], label: str, split: str) -> int:
    return sum(1 for sha, s in splits.items() if units[sha] == label and s == split)


def test_stratified_exact_shares_and_deterministic() -> None:
    units = {**_units(500, "cat"), **_units(300, "dog")}
    first = assign({}, units, test=0.2, validation=0.1, seed=0)
    assert first == assign({}, dict(reversed(units.items())), test=0.2, validation=0.1, seed=0)
    assert _count(first, units, "cat", "test") == 100
    assert _count(first, units, "cat", "validation") == 50
    assert _count(first, units, "dog", "test") == 60
    assert _count(first, units, "dog", "validation") == 30
    assert assign({}, units, test=0.2, validation=0.1, seed=1) != first


def test_append_never_moves_existing_and_keeps_shares() -> None:
    base = {**_units(400, "cat"), **_units(400, "dog")}
    first = assign({}, base, test=0.2, validation=0.0, seed=0)
    existing = {sha: (base[sha], split) for sha, split in first.items()}
    extra = {**_units(100, "cat", "new"), **_units(37, "dog", "new")}
    second = assign(existing, extra, test=0.2, validation=0.0, seed=0)
    assert set(second) == set(extra)  # only new units are assigned; old ones keep their side
    merged = {**first, **second}
    allunits = {**base, **extra}
    assert _count(merged, allunits, "cat", "test") == 100  # round(500 * 0.2)
    assert _count(merged, allunits, "dog", "test") == round(437 * 0.2)
