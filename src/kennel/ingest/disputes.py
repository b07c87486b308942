"""Settling a label dispute: content an ingest found under two labels (``kennel.db.disputes``)
stays out of the dataset until a person names the right label; after that, ingests take the
content under that label only."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow.compute as pc

from kennel.datasets.versioning import DatasetCatalog, check_name
from kennel.db.disputes import Dispute
from kennel.db.ingest import IngestStore
from kennel.errors import ConfigError, NotFoundError, StateError

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def listed(store: IngestStore, dataset: str) -> list[Dispute]:
    """The dataset's disputes, the oldest first."""
    check_name(dataset)
    return sorted(store.disputes(dataset).values(), key=lambda d: (d.seen_at, d.sha256))


def settle(
    store: IngestStore,
    catalog: DatasetCatalog,
    dataset: str,
    content: str,
    label: str,
    *,
    labels: Sequence[str] = (),
    actor: str,
) -> Dispute:
    """Settle the dispute of ``content`` (a sha256, or a file's uri as an ingest of the dataset
    reported it) in ``dataset`` as ``label``: one of ``labels`` (the project's ``data.labels``)
    where they are given, else one the content was offered under."""
    check_name(dataset)
    sha = content.lower() if _SHA256.fullmatch(content) else store.content_of(dataset, content)
    if sha is None:
        raise NotFoundError(
            f"no ingest into {dataset!r} read a file {content!r}: give the file's uri as the "
            "ingest reported it, or its sha256"
        )
    dispute = store.disputes(dataset).get(sha)
    if dispute is None:
        raise NotFoundError(
            f"no label dispute over sha256:{sha[:12]} in {dataset!r} "
            "(`kennel data disputes` lists them)"
        )
    allowed = tuple(labels) or dispute.labels
    if label not in allowed:
        raise ConfigError(
            f"label {label!r} is not one of {', '.join(map(repr, allowed))}"
            + ("" if labels else " (the labels it was offered under)")
        )
    head = catalog.latest(dataset)
    if head is not None:
        table = catalog.table(head)
        held = set(table.filter(pc.equal(table["sha256"], sha))["label"].to_pylist())
        if held and held != {label}:
            raise StateError(
                f"{head.ref} holds sha256:{sha[:12]} as {sorted(held)[0]!r}: a settlement "
                "cannot relabel a version"
            )
    settled = store.settle(dataset, sha, label, actor=actor)
    assert settled is not None  # disputes are never deleted
    return settled
