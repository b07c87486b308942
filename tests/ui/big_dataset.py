"""A large dataset written through kennel's stores as an ingest would leave it, without decoding
an image: an ingest run with a record per file (a few quarantined), the accepted items, and a
committed version; then a child version that appends files (what the diff compares).
benchmarks/ui_pages.py reads it (100,000 images); the bytes behind its digests are not stored,
so its thumbnails are 404s."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass

from kennel.datasets.manifest import Row, attrs_json
from kennel.datasets.versioning import DatasetVersion
from kennel.db.datasets import Item
from kennel.db.ingest import IngestRecord, IngestStore
from kennel.ingest.validate import QUARANTINED
from kennel.wiring import Workspace

CAMERAS = ("cam-gate", "cam-pond", "cam-meadow")
SCENARIOS = ("day", "night", "fog", "rain")
CHUNK = 5000


@dataclass
class Big:
    first: DatasetVersion
    second: DatasetVersion


def _row(rng: random.Random, i: int, prefix: str, split_share: float) -> tuple[Row, Item]:
    label = "cat" if i % 2 else "dog"
    sha = hashlib.sha256(f"{prefix}-{i}".encode()).hexdigest()
    side = rng.choice((160, 200, 240, 320))
    brightness, contrast = rng.gauss(120, 30), rng.gauss(50, 10)
    sharpness, phash = rng.lognormvariate(5, 1), f"{rng.getrandbits(64):016x}"
    attrs = {"camera": rng.choice(CAMERAS), "scenario": rng.choice(SCENARIOS), "index": str(i)}
    split = "test" if rng.random() < split_share else "train"
    row = Row(f"{prefix}/{label}/{i:07d}.jpg", sha, label, split, side, side, brightness,
              contrast, sharpness, phash, attrs_json(attrs))  # fmt: skip
    item = Item(sha, 9000 + i % 5000, "JPEG", "RGB", side, side, brightness, contrast,
                sharpness, phash)  # fmt: skip
    return row, item


def _ingest(
    ws: Workspace,
    dataset: str,
    rows_items: list[tuple[Row, Item]],
    parent: DatasetVersion | None,
    keep: list[Row],
    quarantined: int,
) -> DatasetVersion:
    ws.catalog.ensure_dataset(dataset)
    store = IngestStore(ws.db)
    run = uuid.uuid4().hex
    total = len(rows_items) + quarantined
    store.start(run, dataset=dataset, source=f"synthetic://{dataset}", fingerprint=run,
                parent_version=parent.id if parent else None, files=total,
                actor="benchmark")  # fmt: skip
    records = [
        IngestRecord(run, row.uri, seq, row.label, "ok", row.sha256, None, {})
        for seq, (row, _item) in enumerate(rows_items)
    ]
    reason = "corrupt: image file is truncated"
    for k in range(quarantined):
        uri, seq = f"broken/{k:05d}.jpg", len(rows_items) + k
        records.append(IngestRecord(run, uri, seq, "cat", QUARANTINED, None, reason, {}))
    for start in range(0, len(records), CHUNK):
        chunk_items = [item for _row, item in rows_items[start : start + CHUNK]]
        store.save(chunk_items, records[start : start + CHUNK])
    rows = keep + [row for row, _item in rows_items]
    summary = {"source": f"synthetic://{dataset}", "added": len(rows_items),
               "already_present": 0, "quarantined": {"corrupt": quarantined} if quarantined
               else {}, "quarantine_sample": [], "skipped": {}, "exact_duplicate_groups": 0,
               "exact_duplicates_sample": [], "near_duplicate_pairs": 0,
               "near_duplicates_sample": []}  # fmt: skip
    version, _created = ws.catalog.commit(dataset, rows, parent=parent, ingest_run_id=run,
                                          summary=summary, actor="benchmark")  # fmt: skip
    store.close(run, "done", version.id, summary)
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        expected[row.label][row.split] += 1
    assert version.n_rows == len(rows) and version.counts == expected
    return version


def populate_dataset(
    ws: Workspace,
    dataset: str = "lake",
    *,
    images: int = 100_000,
    appended: int = 1000,
    quarantined: int = 60,
    seed: int = 11,
) -> Big:
    """``dataset`` v1 of ``images`` files (``quarantined`` more refused) and v2 = v1 plus
    ``appended`` new files."""
    rng = random.Random(seed)
    first = [_row(rng, i, "day", 0.2) for i in range(images)]
    v1 = _ingest(ws, dataset, first, None, [], quarantined)
    more = [_row(rng, images + i, "night", 0.2) for i in range(appended)]
    v2 = _ingest(ws, dataset, more, v1, [row for row, _item in first], 0)
    return Big(v1, v2)
