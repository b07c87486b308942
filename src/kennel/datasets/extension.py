"""A dataset version's child: the parent's manifest plus each new file whose content the parent
lacks, with new files given their splits and checked for exact and near duplicates.

It works on the manifest's Arrow columns: the parent is read as a table and never becomes one
Python object per file, so appending 1,000 files to a 100,000-file version costs little more
than the 1,000 (building ``Row``s for the parent, sorting them and turning them back into a
table took most of an append's re-versioning)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kennel.config import SplitConfig
from kennel.datasets import dedupe, splits
from kennel.datasets.manifest import (
    MANIFEST_ORDER,
    SCHEMA,
    attrs_json,
    contiguous,
    repeated,
    uris_of,
)

_NEW = "__new"  # a column marking the added rows while the child is sorted
CANDIDATES = pa.schema([f for f in SCHEMA if f.name != "split"])  # new files, before splits


@dataclass(frozen=True)
class Candidate:
    """A validated new file offered to a version."""

    uri: str
    sha256: str
    label: str
    item: dict[str, Any]
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Extension:
    table: pa.Table  # the child's manifest, in manifest order
    added: int
    already_present: int
    conflicts: list[tuple[str, str]]  # (uri, reason)
    exact_groups: list[list[str]]
    near_pairs: list[tuple[str, str, int]]
    # the rows of ``table`` that are new: every other row is the parent's, unchanged, so this
    # is the whole change from the parent (``compare.additions``)
    new_rows: np.ndarray
    # of ``near_pairs``, those whose two pictures are in different splits: a test or
    # validation picture nearly the same as one trained on flatters the model's scores
    across_splits: list[tuple[str, str, int]] = field(default_factory=list)
    # the uris whose parent row was dropped: the file there was rewritten with other bytes,
    # or read this time and quarantined (then the child is no longer its parent's rows plus
    # ``new_rows``)
    replaced: list[str] = field(default_factory=list)
    # of ``replaced``, those quarantined this time (unreadable now, or refused by the rules as
    # they are now: a narrower label list, a larger minimum side)
    withdrawn: list[str] = field(default_factory=list)
    # the parent's near pairs (all of them, across splits), counted and sampled in its
    # summary, when ``near_pairs`` holds only those with a new row (``extend``'s ``earlier``)
    carried: tuple[int, list[Any], int, list[Any]] = (0, [], 0, [])
    # content refused as disputed: the files that offered it now and their labels (to record)
    disputes: dict[str, dict[str, str]] = field(default_factory=dict)

    def duplicates_summary(self) -> dict[str, Any]:
        """What a version's summary says of its duplicates and rewritten files (samples of at
        most 20): the near pairs of the whole version, the new ones first."""
        near, near_sample, across, across_sample = self.carried
        gone = set(self.withdrawn)
        rewritten = [u for u in self.replaced if u not in gone]
        return {
            "replaced": len(rewritten),
            "replaced_sample": rewritten[:20],
            "withdrawn": len(self.withdrawn),
            "withdrawn_sample": self.withdrawn[:20],
            "exact_duplicate_groups": len(self.exact_groups),
            "exact_duplicates_sample": self.exact_groups[:20],
            "near_duplicate_pairs": len(self.near_pairs) + near,
            "near_duplicates_sample": ([list(p) for p in self.near_pairs] + near_sample)[:20],
            "near_duplicates_across_splits": len(self.across_splits) + across,
            "near_duplicates_across_splits_sample": (
                [list(p) for p in self.across_splits] + across_sample
            )[:20],
        }


def offered(columns: Mapping[str, Sequence[Any]]) -> pa.Table:
    """New files as a table of candidates, from columns named as the manifest's (``split``
    aside), their ``attrs`` as dicts (``IngestStore.accepted`` gives them so)."""
    attrs = [attrs_json(a) if a else "{}" for a in columns["attrs"]]
    data = {name: attrs if name == "attrs" else columns[name] for name in CANDIDATES.names}
    return pa.Table.from_pydict(data, schema=CANDIDATES)


def candidates_table(candidates: Sequence[Candidate]) -> pa.Table:
    """``offered`` for candidates given one by one."""
    columns: dict[str, list[Any]] = {
        "uri": [c.uri for c in candidates],
        "sha256": [c.sha256 for c in candidates],
        "label": [c.label for c in candidates],
        "attrs": [c.attrs for c in candidates],
    }
    for name in ("width", "height", "brightness", "contrast", "sharpness", "phash"):
        columns[name] = [c.item[name] for c in candidates]
    return offered(columns)


def extend(
    parent: pa.Table,
    candidates: pa.Table,
    *,
    split: SplitConfig,
    near_distance: int,
    parent_unique: bool = False,
    refused: Sequence[tuple[str, str]] = (),
    earlier: Mapping[str, Any] | None = None,
    disputed: Mapping[str, Sequence[str]] | None = None,
    settled: Mapping[str, str] | None = None,
) -> Extension:
    """The child of ``parent`` (a manifest table) holding every candidate (a table from
    ``offered``) whose content is new to it. A candidate whose bytes the parent holds under its
    label already is counted as present; under another label, or offered twice with two
    labels, it is a conflict. ``parent_unique``: the caller knows that no two of the parent's
    rows hold the same content (an ingest's summary of it counts no duplicate group), so its
    contents are not counted again (two hash passes over 100,000 sha256 values, a tenth of a
    1 % append). A file rewritten in place (a parent's row has its uri and other bytes) is
    what its uri holds now: that parent row is left out of the child, and its new bytes take
    its place even where another file holds them already (a copy); a file ``refused`` this
    time (uri, sha256: read and quarantined) loses its row, whatever its bytes. Near pairs
    are searched among pairs with a new row; given ``earlier``, the parent's summary, the
    child's count the parent's with them (its rows are not searched again), or, when a row
    of the parent was dropped, every pair of the child is searched. Content the parent lacks
    that is ``disputed`` (offered under those labels before, unsettled) is a conflict under
    any label, as content offered twice with two labels is: neither becomes its label by
    being offered alone later. Content ``settled`` as a label is taken under that label only."""
    offer = candidates.sort_by([("uri", "ascending")])
    parent, replaced, moved, withdrawn = _without_rewritten(parent, offer, refused)
    rewritten = set(replaced)
    uris, shas = offer["uri"].to_pylist(), contiguous(offer["sha256"])
    labels = offer["label"].to_pylist()
    # the label the parent gives each candidate's bytes: its last row with them (the catalog
    # keeps one label per content; a manifest from elsewhere may not, and then the last
    # decides, as it always has)
    backwards = contiguous(parent["sha256"])[::-1]
    found = pc.index_in(shas, value_set=backwards).fill_null(-1).to_numpy()
    known = found >= 0
    where = parent.num_rows - 1 - found[known]
    held_label = contiguous(parent["label"]).take(pa.array(where)).to_pylist()
    held_shas = shas.filter(pa.array(known)).to_pylist()
    label_of = dict(zip(held_shas, held_label, strict=True))
    held_split = contiguous(parent["split"]).take(pa.array(where)).to_pylist()
    split_held = dict(zip(held_shas, held_split, strict=True))  # a copy joins its split
    offered_shas = shas.to_pylist()
    # the labels each new content is offered under: under two, no copy says which is right
    named: dict[str, set[str]] = defaultdict(set)
    for sha, label in zip(offered_shas, labels, strict=True):
        if sha not in label_of:
            named[sha].add(label)
    disputed, settled = disputed or {}, settled or {}
    disputes: dict[str, dict[str, str]] = defaultdict(dict)
    seen_label: dict[str, str] = {}
    keep = np.zeros(len(uris), dtype=bool)
    already = 0
    conflicts: list[tuple[str, str]] = []
    for n, (uri, sha, label) in enumerate(zip(uris, offered_shas, labels, strict=True)):
        held = label_of.get(sha)
        if held is not None:
            if held == label and uri in rewritten:  # its uri holds these bytes now: a copy
                keep[n] = True
            elif held == label:
                already += 1
            else:
                conflicts.append(
                    (uri, f"label conflict: the same bytes are labelled {held!r} already")
                )
            continue
        if sha in settled:
            if label != settled[sha]:
                conflicts.append((uri, f"label conflict: settled as {settled[sha]!r}"))
                continue
        elif len(named[sha]) > 1 or sha in disputed:  # every copy, not the first in uri order
            disputes[sha][uri] = label
            conflicts.append((uri, _disputed(label, named[sha], disputed.get(sha, ()))))
            continue
        if sha not in moved:  # content a dropped row held keeps its split (a swap, a rotation)
            seen_label[sha] = label
        keep[n] = True

    assigned = splits.assign_counted(
        _units(parent, unique=parent_unique),
        seen_label,
        test=split.test,
        validation=split.validation,
        seed=split.seed,
    )
    accepted = offer.filter(pa.array(keep))
    accepted_shas = accepted["sha256"].to_pylist()
    split_of = [assigned.get(sha) or split_held.get(sha) or moved[sha] for sha in accepted_shas]
    split_column = pa.array(split_of, pa.string())
    added = accepted.add_column(SCHEMA.get_field_index("split"), "split", split_column)
    marked = pa.concat_tables(
        [
            parent.append_column(_NEW, pa.array(np.zeros(parent.num_rows, dtype=bool))),
            added.append_column(_NEW, pa.array(np.ones(added.num_rows, dtype=bool))),
        ]
    ).sort_by(MANIFEST_ORDER)
    is_new = marked[_NEW].to_numpy()
    child = marked.drop_columns([_NEW]).combine_chunks()
    uri, sha256 = contiguous(child["uri"]), contiguous(child["sha256"])
    # contents held by more than one file; an added file's content is never the parent's (it
    # is present already, or a conflict), so with none repeated in the parent only the added
    # files can repeat one
    copied = any(sha in split_held or sha in moved for sha in accepted_shas)
    shared = repeated(contiguous(added["sha256"]) if parent_unique and not copied else sha256)
    copies, groups = None, {}
    if len(shared):
        # each row's content among them (-1: held by no other row): copies are no near pair
        copies = pc.index_in(sha256, value_set=shared).fill_null(-1).to_numpy()
        groups = uris_of(sha256, uri, shared)
    carried = _carried(earlier) if earlier is not None and not replaced else None
    whole = earlier is not None and bool(replaced)  # the parent's pairs are not all the child's
    searched = np.ones(len(is_new), dtype=bool) if whole else is_new
    pairs = dedupe.near_pairs(
        child["phash"].to_pylist(), searched, distance=near_distance, copies=copies
    )
    split_of_row = contiguous(child["split"]).to_numpy(zero_copy_only=False)
    across = [p for p in pairs if split_of_row[p[0]] != split_of_row[p[1]]]
    return Extension(
        table=child,
        added=added.num_rows,
        already_present=already,
        conflicts=conflicts,
        exact_groups=dedupe.exact_groups(groups),
        near_pairs=_named(uri, pairs),
        new_rows=np.flatnonzero(is_new),
        across_splits=_named(uri, across),
        replaced=replaced,
        withdrawn=withdrawn,
        carried=carried or (0, [], 0, []),
        disputes=dict(disputes),
    )


def _disputed(label: str, now: set[str], before: Sequence[str]) -> str:
    """The reason content offered under ``label`` is refused: this run offers it under the
    labels ``now``, earlier ingests offered it under ``before``."""
    if len(now) > 1:
        others = " and ".join(repr(o) for o in sorted(now - {label}))
        return f"label conflict: the same bytes are also labelled {others}"
    others = " and ".join(repr(o) for o in sorted(set(before) - {label}))
    return (
        f"label conflict: the same bytes were offered as {others} too "
        "(disputed until `kennel data settle` names the right label)"
    )


def _carried(summary: Mapping[str, Any]) -> tuple[int, list[Any], int, list[Any]]:
    """The near pairs a version's ``summary`` counts and samples (none in an older one)."""
    return (
        int(summary.get("near_duplicate_pairs", 0)),
        list(summary.get("near_duplicates_sample", [])),
        int(summary.get("near_duplicates_across_splits", 0)),
        list(summary.get("near_duplicates_across_splits_sample", [])),
    )


def _without_rewritten(
    parent: pa.Table, offer: pa.Table, refused: Sequence[tuple[str, str]] = ()
) -> tuple[pa.Table, list[str], dict[str, str], list[str]]:
    """``parent`` without the rows whose uri is offered with other bytes or was refused this
    time ("" for bytes never hashed), their uris, the split each of their contents had, and
    of those uris the refused ones."""
    if not parent.num_rows or not (offer.num_rows or refused):
        return parent, [], {}, []
    now_uris = pa.concat_arrays(
        [contiguous(offer["uri"]), pa.array([u for u, _ in refused], pa.string())]
    )
    now_shas = pa.concat_arrays(
        [contiguous(offer["sha256"]), pa.array([h for _, h in refused], pa.string())]
    )
    their_uris, their_shas = contiguous(parent["uri"]), contiguous(parent["sha256"])
    found = pc.index_in(their_uris, value_set=now_uris).fill_null(-1).to_numpy()
    hit = np.flatnonzero(found >= 0)
    if not len(hit):
        return parent, [], {}, []
    theirs = their_shas.take(pa.array(hit))
    ours = now_shas.take(pa.array(found[hit]))
    differ = np.asarray(pc.not_equal(theirs, ours).to_numpy(zero_copy_only=False), bool)
    refused_now = found[hit] >= offer.num_rows  # same bytes or not: the rules refuse it now
    stale = hit[differ | refused_now]
    if not len(stale):
        return parent, [], {}, []
    keep = np.ones(parent.num_rows, dtype=bool)
    keep[stale] = False
    uris = their_uris.take(pa.array(stale)).to_pylist()
    shas = their_shas.take(pa.array(stale)).to_pylist()
    split = contiguous(parent["split"]).take(pa.array(stale)).to_pylist()
    withdrawn = sorted(set(their_uris.take(pa.array(hit[refused_now])).to_pylist()))
    kept = parent.filter(pa.array(keep))
    return kept, sorted(set(uris)), dict(zip(shas, split, strict=True)), withdrawn


def _units(parent: pa.Table, *, unique: bool = False) -> dict[str, dict[str, int]]:
    """How many distinct contents (the unit of a split) each label has in each split, each
    content counted once, under its last row's label and split (``unique``: every row is known
    to hold its own content)."""
    shas = contiguous(parent["sha256"])
    contents = shas if unique else pc.unique(shas)
    if len(contents) == len(shas):  # every row its own content (the usual case): all rows
        units = parent.select(["label", "split"])
    else:  # each content's last row: its first in the column read backwards
        last = parent.num_rows - 1 - pc.index_in(contents, value_set=shas[::-1]).to_numpy()
        rows = pa.array(last, pa.int64())
        units = pa.table(
            {"label": contiguous(parent["label"]).take(rows),
             "split": contiguous(parent["split"]).take(rows)}
        )  # fmt: skip
    counted = units.group_by(["label", "split"], use_threads=False).aggregate([([], "count_all")])
    have: dict[str, dict[str, int]] = defaultdict(dict)
    for row in counted.to_pylist():
        have[row["label"]][row["split"]] = int(row["count_all"])
    return have


def _named(uri: pa.Array, pairs: list[tuple[int, int, int]]) -> list[tuple[str, str, int]]:
    """The pairs of rows with their uris, looked up all at once (one lookup per uri cost
    0.4 s for 100,000 pairs)."""
    if not pairs:
        return []
    i, j, bits = zip(*pairs, strict=True)
    first = uri.take(pa.array(i, pa.int64())).to_pylist()
    second = uri.take(pa.array(j, pa.int64())).to_pylist()
    return list(zip(first, second, bits, strict=True))
