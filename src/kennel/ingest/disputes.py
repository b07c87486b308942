"""Settling a label dispute: content an ingest found under two labels (``kennel.db.disputes``)
stays out of the dataset until a person names the right label; after that, ingests take the
content under that label only."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from kennel.datasets.extension import Extension
from kennel.datasets.versioning import DatasetCatalog, check_name
from kennel.db.disputes import Dispute, Offer
from kennel.db.ingest import IngestStore
from kennel.errors import AmbiguousRefError, ConfigError, NotFoundError, StateError
from kennel.ingest.sources import DisputingSource, Source

_DIGEST = re.compile(r"(?i:sha256:)?([0-9a-fA-F]{8,64})")  # whole, or as kennel shortens it
_SHORT = re.compile(r"(?i:sha256:)[0-9a-fA-F]{0,7}")


def listed(store: IngestStore, catalog: DatasetCatalog, dataset: str) -> list[Dispute]:
    """The dataset's disputes, the oldest first; NotFoundError for a dataset that has neither
    versions nor disputes (a failed first ingest leaves no dataset, but its disputes)."""
    check_name(dataset)
    found = sorted(store.disputes(dataset).values(), key=lambda d: (d.seen_at, d.sha256))
    if not found and dataset not in catalog.datasets():
        catalog.resolve(dataset)  # the one-line error, with a did-you-mean
    return found


def _content(store: IngestStore, dataset: str, content: str) -> Dispute:
    """The dispute ``content`` names: a sha256 (``sha256:`` and at least 8 of its first hex
    digits do, as kennel shortens it) or a file's uri as an ingest reported it."""
    if not content.strip():
        raise ConfigError("give the disputed content's sha256, or a file's uri as ingested")
    if _SHORT.fullmatch(content.strip()):
        raise ConfigError(f"{content.strip()!r}: give 8 or more digits of the sha256")
    disputes = store.disputes(dataset)
    sha = store.content_of(dataset, content)  # a file's uri (one named like hex digits too)
    digest = _DIGEST.fullmatch(content.strip())
    if digest is not None and sha is None:
        start = digest[1].lower()
        matching = [found for found in disputes if found.startswith(start)]
        if len(matching) > 1:
            raise AmbiguousRefError(f"sha256:{start} names {len(matching)} disputes: give more")
        if matching:
            return disputes[matching[0]]
    if sha is None and digest is None:
        raise NotFoundError(
            f"no ingest into {dataset!r} read a file {content!r}: give the file's uri as the "
            "ingest reported it, or its sha256"
        )
    if sha is None or sha not in disputes:
        shown = (sha or digest[1].lower())[:12]  # type: ignore[index]
        raise NotFoundError(
            f"no label dispute over sha256:{shown} in {dataset!r} "
            "(`kennel data disputes` lists them)"
        )
    return disputes[sha]


def settle(
    store: IngestStore,
    catalog: DatasetCatalog,
    dataset: str,
    content: str,
    label: str,
    *,
    labels: Sequence[str] = (),
    actor: str,
) -> tuple[Dispute, bool]:
    """Settle the dispute of ``content`` (``_content``) in ``dataset`` as ``label``: one of
    ``labels`` (the project's ``data.labels``) where they are given, else one the content was
    offered under. False with it: it was settled so already (nothing recorded again)."""
    check_name(dataset)
    dispute = _content(store, dataset, content)
    sha = dispute.sha256
    allowed = tuple(labels) or dispute.labels
    if label not in allowed:
        raise ConfigError(
            f"label {label!r} is not one of {', '.join(map(repr, allowed))}"
            + ("" if labels else " (the labels it was offered under)")
        )
    if dispute.settled_label == label:
        return dispute, False
    head = catalog.latest(dataset)
    if head is not None:
        table = catalog.table(head)
        held = set(table.filter(pc.equal(table["sha256"], sha))["label"].to_pylist())
        if held:
            said = "nothing to settle" if held == {label} else "a settlement cannot relabel it"
            raise StateError(f"{head.ref} holds sha256:{sha[:12]} as {sorted(held)[0]!r}: {said}")
    settled = store.settle(dataset, sha, label, actor=actor)
    assert settled is not None  # disputes are never deleted
    return settled, True


def known(
    store: IngestStore, dataset: str, source: Source
) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """What an ingest of ``source`` holds disputed (by sha256: the labels, unsettled) and
    settled (the label): the dataset's disputes, and the content of a file the source names
    with two labels (a manifest's rows), so that every other copy of it is refused too."""
    disputes = store.disputes(dataset)
    disputed = {s: d.labels for s, d in disputes.items() if d.settled_label is None}
    settled = {s: d.settled_label for s, d in disputes.items() if d.settled_label}
    if isinstance(source, DisputingSource):
        for sha, (labels, _uri) in source.disputed().items():
            disputed[sha] = tuple(sorted(set(disputed.get(sha, ())) | labels))
    return disputed, settled


def offers(ext: Extension, source: Source) -> dict[str, Offer]:
    """The label disputes a run found: the extension's, and the files a manifest names on two
    rows with two labels (refused unread by the source, so hashed by it), except content the
    new version holds (under its earlier label, which a later offer does not dispute)."""
    found = {sha: Offer(frozenset(files.values()), files) for sha, files in ext.disputes.items()}
    if isinstance(source, DisputingSource):
        named = source.disputed()
        shas = pa.array(list(named), pa.string())
        held = pc.is_in(shas, value_set=ext.table["sha256"].combine_chunks()).to_pylist()
        for (sha, (labels, uri)), kept in zip(named.items(), held, strict=True):
            if kept:
                continue
            earlier = found.get(sha, Offer(frozenset()))
            files = {**earlier.files, uri: " / ".join(sorted(labels))}
            found[sha] = Offer(earlier.labels | labels, files)
    return found
