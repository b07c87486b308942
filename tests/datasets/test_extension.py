"""The child of a version, built on Arrow columns, against a plain Python model of what a child
is (one ``Row`` per file, sorted, every check written out), on random parents and offers."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from kennel.config import SplitConfig
from kennel.datasets import compare, extension, splits
from kennel.datasets.extension import Candidate, Extension, candidates_table, extend
from kennel.datasets.manifest import SCHEMA, Row, by_key, read_table, to_parquet, to_table
from kennel.datasets.manifest import version_id as manifest_version_id

SPLIT = SplitConfig(test=0.2, validation=0.1, seed=7)
# floats whose 4th decimal a shortcut gets wrong: exact ties in decimal but not in binary,
# a negative zero after rounding, large and tiny values
AWKWARD = [0.12345, 2.00005, 1.00015, -0.00001, 0.0, -0.0, 1e12 + 0.00005, 3.5e-5, 255.0]


def model_extend(parent: list[Row], candidates: list[Candidate]) -> dict[str, Any]:
    """What a child is, row by row (the catalog's rule before it moved to columns): a parent's
    row whose uri is offered with other bytes (rewritten in place) is left out first."""
    now = {c.uri: c.sha256 for c in candidates}
    replaced = sorted({r.uri for r in parent if now.get(r.uri, r.sha256) != r.sha256})
    # the split of each content a left-out row held: it never moves (a swap of two files)
    moved = {r.sha256: r.split for r in parent if now.get(r.uri, r.sha256) != r.sha256}
    parent = [r for r in parent if now.get(r.uri, r.sha256) == r.sha256]
    known = {row.sha256: (row.label, row.split) for row in parent}
    offered_as: dict[str, set[str]] = defaultdict(set)
    for cand in candidates:
        offered_as[cand.sha256].add(cand.label)
    seen: dict[str, str] = {}
    accepted, conflicts, already = [], [], 0
    copies = []  # rewritten to bytes another file holds: a row of their own, in that split
    for cand in sorted(candidates, key=lambda c: c.uri):
        if cand.sha256 in known:
            label = known[cand.sha256][0]
            if label == cand.label and cand.uri in replaced:
                copies.append(cand)
            elif label == cand.label:
                already += 1
            else:
                reason = f"label conflict: the same bytes are labelled {label!r} already"
                conflicts.append((cand.uri, reason))
            continue
        others = sorted(offered_as[cand.sha256] - {cand.label})
        if others:  # offered under two labels: no copy is taken
            also = " and ".join(repr(o) for o in others)
            conflicts.append((cand.uri, f"label conflict: the same bytes are also labelled {also}"))
            continue
        if cand.sha256 not in moved:
            seen[cand.sha256] = cand.label
        accepted.append(cand)
    assigned = splits.assign(
        known, seen, test=SPLIT.test, validation=SPLIT.validation, seed=SPLIT.seed
    )
    split_of = {**moved, **{sha: split for sha, (_label, split) in known.items()}, **assigned}
    added = [
        Row(
            c.uri,
            c.sha256,
            c.label,
            split_of[c.sha256],
            int(c.item["width"]),
            int(c.item["height"]),
            float(c.item["brightness"]),
            float(c.item["contrast"]),
            float(c.item["sharpness"]),
            str(c.item["phash"]),
            json.dumps(c.attrs, sort_keys=True, separators=(",", ":")),
        )
        for c in sorted([*accepted, *copies], key=lambda c: c.uri)
    ]
    rows = sorted([*parent, *added], key=by_key)
    by_sha: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_sha[row.sha256].append(row.uri)
    new_keys = {r.key for r in added}
    # every two files, one of them new, whose hashes are within 4 bits, their bytes not the same
    pairs = [
        (i, j, bits)
        for i, j in itertools.combinations(range(len(rows)), 2)
        if (rows[i].key in new_keys or rows[j].key in new_keys)
        and rows[i].sha256 != rows[j].sha256
        and (bits := bin(int(rows[i].phash, 16) ^ int(rows[j].phash, 16)).count("1")) <= 4
    ]
    return {
        "rows": rows,
        "added": len(added),
        "already": already,
        "conflicts": conflicts,
        "exact": sorted(sorted(u) for u in by_sha.values() if len(u) > 1),
        "near": [(rows[i].uri, rows[j].uri, b) for i, j, b in pairs],
        "across": [
            (rows[i].uri, rows[j].uri, b) for i, j, b in pairs if rows[i].split != rows[j].split
        ],
        "replaced": replaced,
    }


def model_version_id(rows: list[Row]) -> str:
    digest = hashlib.sha256()
    for r in sorted(rows, key=by_key):
        head = f"{r.uri}\t{r.sha256}\t{r.label}\t{r.split}\t{r.width}\t{r.height}\t"
        floats = f"{r.brightness:.4f}\t{r.contrast:.4f}\t{r.sharpness:.4f}\t"
        digest.update(f"{head}{floats}{r.phash}\t{r.attrs}\n".encode())
    return digest.hexdigest()


def offers(rng: np.random.Generator, n: int, contents: list[str]) -> list[Candidate]:
    names = ["a", "b", "chat", "Ö", "z", "🐕", "é/x", "a b"]
    out: dict[str, Candidate] = {}
    for _ in range(n):
        uri = f"file:///lake/{names[int(rng.integers(len(names)))]}/{int(rng.integers(10**6))}.jpg"
        item = {
            "width": int(rng.integers(1, 4000)),
            "height": int(rng.integers(1, 4000)),
            "brightness": float(rng.choice(AWKWARD)) if rng.random() < 0.3 else rng.random() * 255,
            "contrast": float(rng.choice(AWKWARD)) if rng.random() < 0.3 else rng.random() * 90,
            "sharpness": rng.random() * 10 ** int(rng.integers(0, 7)),
            "phash": f"{int(rng.integers(0, 2**20)) << int(rng.integers(0, 44)):016x}",
        }
        attrs = {"camera": f"cam{int(rng.integers(3))}"} if rng.random() < 0.5 else {}
        out[uri] = Candidate(
            uri, str(rng.choice(contents)), str(rng.choice(["cat", "dog"])), item, attrs
        )
    return list(out.values())


@pytest.mark.parametrize("seed", range(12))
def test_the_columnar_child_is_the_row_by_row_child(seed: int) -> None:
    rng = np.random.default_rng(seed)
    kinds = int(rng.integers(5, 400))
    contents = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(kinds)]
    first = offers(rng, int(rng.integers(0, 300)), contents)
    parent_rows = model_extend([], first)["rows"]
    parent = read_table(to_parquet(to_table(parent_rows))) if parent_rows else SCHEMA.empty_table()
    offered = offers(rng, int(rng.integers(0, 200)), contents)
    # some files of the parent offered again: as they were, or rewritten with other bytes
    taken = {c.uri for c in offered}
    for cand in first[: int(rng.integers(0, len(first) + 1))]:
        if cand.uri not in taken and rng.random() < 0.3:
            sha = cand.sha256 if rng.random() < 0.5 else str(rng.choice(contents))
            offered.append(Candidate(cand.uri, sha, cand.label, cand.item, cand.attrs))
    want = model_extend(parent_rows, offered)
    got = extend(parent, candidates_table(offered), split=SPLIT, near_distance=4)
    assert got.replaced == want["replaced"]
    assert [Row(**r) for r in got.table.to_pylist()] == want["rows"]
    assert (got.added, got.already_present) == (want["added"], want["already"])
    assert got.conflicts == want["conflicts"]
    assert got.exact_groups == want["exact"]
    assert got.near_pairs == want["near"]
    assert got.across_splits == want["across"]
    assert manifest_version_id(got.table) == model_version_id(want["rows"])
    assert manifest_version_id(want["rows"]) == model_version_id(want["rows"])
    if not got.replaced:  # else the catalog compares the two versions (rows went too)
        _changes_are_the_additions(parent, got)


@pytest.mark.parametrize("seed", range(8))
def test_a_parent_known_to_repeat_no_content_gives_the_same_child(seed: int) -> None:
    """``parent_unique`` (an ingest's summary of the parent counts no exact-duplicate group)
    skips counting the parent's contents again: the child is the row-by-row one all the same,
    copies among the new files found as groups."""
    rng = np.random.default_rng(100 + seed)
    contents = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(300)]
    first = {c.sha256: c for c in offers(rng, 150, contents)}  # one file per content
    parent_rows = model_extend([], list(first.values()))["rows"]
    assert len({r.sha256 for r in parent_rows}) == len(parent_rows)
    parent = read_table(to_parquet(to_table(parent_rows)))
    offered = offers(rng, 120, contents)  # copies of each other and of the parent's files
    fresh = hashlib.sha256(b"fresh").hexdigest()  # a new content offered twice, one label
    twin = offered[0]
    offered += [
        Candidate(f"file:///lake/twin/{k}.jpg", fresh, "cat", twin.item, {}) for k in range(2)
    ]
    want = model_extend(parent_rows, offered)
    got = extend(
        parent, candidates_table(offered), split=SPLIT, near_distance=4, parent_unique=True
    )
    assert [Row(**r) for r in got.table.to_pylist()] == want["rows"]
    assert (got.added, got.already_present) == (want["added"], want["already"])
    assert got.conflicts == want["conflicts"]
    assert got.exact_groups == want["exact"] and want["exact"]
    assert got.near_pairs == want["near"]


def _changes_are_the_additions(parent: pa.Table, got: Extension) -> None:
    """The child's changes from its parent, as the catalog keeps them without comparing the
    two, are what comparing them finds."""
    for limit in (None, 3):
        shortcut = compare.additions(got.new_rows, limit=limit)
        found = compare.changes(compare.of_table(parent), compare.of_table(got.table), limit=limit)
        assert shortcut == found


def test_version_ids_of_awkward_floats_follow_python_formatting() -> None:
    rows = [
        Row(f"u{i}", "s", "cat", "train", 1, 1, x, -x, x * 3, "0" * 16, "{}")
        for i, x in enumerate(AWKWARD)
    ]
    assert manifest_version_id(to_table(rows)) == model_version_id(rows)


def test_a_manifest_with_an_empty_value_has_no_version_id() -> None:
    table = to_table([Row("u", "s", "cat", "train", 1, 1, 0.5, 0.5, 0.5, "0" * 16, "{}")])
    broken = table.set_column(2, "label", pa.array([None], pa.string()))
    with pytest.raises(ValueError, match="label"):
        manifest_version_id(broken)


def test_offering_only_what_the_parent_holds_adds_nothing() -> None:
    rng = np.random.default_rng(5)
    contents = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(50)]
    parent_rows = model_extend([], offers(rng, 80, contents))["rows"]
    parent = read_table(to_parquet(to_table(parent_rows)))
    again = [Candidate(r.uri, r.sha256, r.label, {"width": r.width, "height": r.height,
             "brightness": r.brightness, "contrast": r.contrast, "sharpness": r.sharpness,
             "phash": r.phash}) for r in parent_rows]  # fmt: skip
    for offer in (again, []):
        got = extend(parent, candidates_table(offer), split=SPLIT, near_distance=4)
        assert [Row(**r) for r in got.table.to_pylist()] == parent_rows
        assert (got.added, got.already_present, got.conflicts) == (0, len(offer), [])
        assert manifest_version_id(got.table) == model_version_id(parent_rows)


@pytest.mark.parametrize("seed", range(6))
def test_a_parent_kennel_did_not_write_is_read_as_before(seed: int) -> None:
    """A manifest from elsewhere may give one content two labels or two splits (kennel's
    never does): its last row decides, for conflicts and for the split counts."""
    rng = np.random.default_rng(100 + seed)
    contents = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(30)]
    labels, splits_ = ["cat", "dog"], ["train", "test", "validation"]
    parent_rows = [
        Row(f"p{i:02d}", str(rng.choice(contents)), str(rng.choice(labels)),
            str(rng.choice(splits_)), 8, 8, 0.5, 0.5, 0.5, f"{i:016x}", "{}")
        for i in range(60)
    ]  # fmt: skip
    offered = offers(rng, 40, contents)
    want = model_extend(parent_rows, offered)
    parent = read_table(to_parquet(to_table(parent_rows)))
    got = extend(parent, candidates_table(offered), split=SPLIT, near_distance=4)
    assert [Row(**r) for r in got.table.to_pylist()] == want["rows"]
    assert (got.added, got.already_present) == (want["added"], want["already"])
    assert got.conflicts == want["conflicts"]
    _changes_are_the_additions(parent, got)


@pytest.mark.parametrize("copies", [False, True])
def test_split_units_count_each_content_once_under_its_last_row(copies: bool) -> None:
    """How many contents each label has in each split (what a new file's split is drawn
    against): every row its own content, or contents held by several rows."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(300):
        content = int(rng.integers(0, 120)) if copies else i
        sha = hashlib.sha256(str(content).encode()).hexdigest()
        label, split = str(rng.choice(["cat", "dog"])), str(rng.choice(["train", "test"]))
        rows.append(Row(f"u/{i:04d}.jpg", sha, label, split, 8, 8, 1.0, 1.0, 1.0, "0" * 16, "{}"))
    table = to_table(rows)
    last = {r.sha256: (r.label, r.split) for r in sorted(rows, key=by_key)}
    want: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for label, split in last.values():
        want[label][split] += 1
    assert (len(last) < len(rows)) == copies
    assert extension._units(table) == want


def test_near_duplicates_in_two_splits_are_counted_and_sampled() -> None:
    """Twenty pictures of one scene (hashes 0-1 bit apart, bytes all different) are split
    like any twenty: the pairs whose two sides are in different splits are the ones a held-out
    score can be flattered by, and the summary counts them."""
    item = {"width": 64, "height": 64, "brightness": 1.0, "contrast": 1.0, "sharpness": 1.0}
    offered = [
        Candidate(
            f"file:///lake/cat/{n:02d}.jpg",
            hashlib.sha256(str(n).encode()).hexdigest(),
            "cat",
            {**item, "phash": f"{n % 2:016x}"},
        )
        for n in range(20)
    ]
    got = extend(SCHEMA.empty_table(), candidates_table(offered), split=SPLIT, near_distance=4)
    split_of = {r["uri"]: r["split"] for r in got.table.to_pylist()}
    counts = {s: list(split_of.values()).count(s) for s in set(split_of.values())}
    assert counts == {"train": 14, "validation": 2, "test": 4}
    assert len(got.near_pairs) == 20 * 19 // 2
    across = 14 * 2 + 14 * 4 + 2 * 4
    assert len(got.across_splits) == across
    assert all(split_of[a] != split_of[b] for a, b, _bits in got.across_splits)
    summary = got.duplicates_summary()
    assert summary["near_duplicates_across_splits"] == across
    assert summary["near_duplicates_across_splits_sample"] == [
        list(p) for p in got.across_splits[:20]
    ]
    # one split for all: nothing across
    whole = SplitConfig(test=0.0, validation=0.0, seed=7)
    one = extend(SCHEMA.empty_table(), candidates_table(offered), split=whole, near_distance=4)
    assert one.near_pairs and one.across_splits == []


def _all_pairs(rows: list[Row]) -> tuple[int, int]:
    """Every near pair of ``rows`` (their bytes not the same, hashes within 4 bits), and how
    many of them lie in two splits."""
    pairs = [
        (a, b)
        for a, b in itertools.combinations(rows, 2)
        if a.sha256 != b.sha256 and bin(int(a.phash, 16) ^ int(b.phash, 16)).count("1") <= 4
    ]
    return len(pairs), sum(a.split != b.split for a, b in pairs)


@pytest.mark.parametrize("seed", range(6))
def test_a_childs_summary_counts_every_near_pair_it_holds(seed: int) -> None:
    """Given the parent's summary, an appended version counts the parent's near pairs (and
    those across splits) with its new ones: the leakage warning does not vanish on the next
    append. Where a file was rewritten (a parent row dropped), every pair is searched again."""
    rng = np.random.default_rng(300 + seed)
    contents = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(200)]
    first = offers(rng, 150, contents)
    root = extend(SCHEMA.empty_table(), candidates_table(first), split=SPLIT, near_distance=4)
    summary = root.duplicates_summary()
    rows = [Row(**r) for r in root.table.to_pylist()]
    assert (summary["near_duplicate_pairs"], summary["near_duplicates_across_splits"]) == (
        _all_pairs(rows)
    )
    offered = offers(rng, 60, contents)
    if seed % 2:  # a file of the parent rewritten with other bytes
        kept = {c.uri for c in offered}
        old = next(r for r in rows if r.uri not in kept)
        other = next(c for c in contents if c != old.sha256)
        offered.append(Candidate(old.uri, other, old.label, offered[0].item, {}))
    child = extend(
        root.table, candidates_table(offered), split=SPLIT, near_distance=4, earlier=summary
    )
    assert bool(child.replaced) == bool(seed % 2)
    said = child.duplicates_summary()
    rows = [Row(**r) for r in child.table.to_pylist()]
    assert (said["near_duplicate_pairs"], said["near_duplicates_across_splits"]) == (
        _all_pairs(rows)
    )
    assert said["near_duplicate_pairs"] >= summary["near_duplicate_pairs"] or child.replaced
    assert len(said["near_duplicates_sample"]) == min(20, said["near_duplicate_pairs"])
