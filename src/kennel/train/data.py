"""The training input pipeline: decode and resize each image once per (dataset version, image
size) into a uint8 memmap, then feed batches from memory and augment them as tensors.

The cache is derived data: it lives under ``.kennel/cache``, is written to a temp folder and
renamed into place when complete, and is rebuilt if missing. Decoding uses the same
``kennel.imaging`` functions as serving, so train and serve see identical pixels.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kennel.datasets.manifest import Row
from kennel.fsutil import is_locked, try_lock
from kennel.imaging import decode, square
from kennel.ingest.lifeline import die_with_parent
from kennel.portable import JPEG_DRAFT, jpeg_draft
from kennel.storage import ContentStore, open_content_store

# 2: large JPEGs decoded at a reduced scale (kennel.portable.JPEG_DRAFT); 3: a plan's rows in
# content order (a cache in the manifest's order would pair images with the wrong labels)
CACHE_FORMAT = 3
_CHUNK = 128
_TMP = ".tmp-"  # a cache folder being filled
_OWNER = "owner.lock"


@dataclass(frozen=True)
class ImageSet:
    """Images of one dataset version at one size, in manifest order."""

    images: np.ndarray  # uint8 [N, S, S, 3], usually a read-only memmap
    labels: np.ndarray  # int64 [N], index into ``classes``
    splits: np.ndarray  # str [N]: train / validation / test
    rows: tuple[Row, ...]
    classes: tuple[str, ...]

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)


def column(rows: Sequence[Row], indices: np.ndarray, name: str) -> np.ndarray:
    """The value of manifest column ``name`` ("label", "split" or a source column in attrs)
    for each of ``indices``; missing values are ""."""
    if name in ("label", "split", "uri"):
        return np.array([getattr(rows[i], name) for i in indices], dtype=object)
    return np.array([json.loads(rows[i].attrs).get(name, "") for i in indices], dtype=object)


def balanced_weights(groups: np.ndarray) -> np.ndarray:
    """Sampling weights that give every distinct value of ``groups`` the same total share."""
    _, inverse, counts = np.unique(groups.astype(str), return_inverse=True, return_counts=True)
    return 1.0 / (counts[inverse] * len(counts))


def holdout(rows: Sequence[Row], share: float, seed: int) -> np.ndarray:
    """Validation indices carved from the train split by content hash: stratified, stable, and
    never touching the test split (which tuning must not see)."""
    picked: list[int] = []
    by_label: dict[str, list[tuple[str, int]]] = {}
    for index, row in enumerate(rows):
        if row.split == "train":
            key = hashlib.sha256(f"val:{seed}:{row.sha256}".encode()).hexdigest()
            by_label.setdefault(row.label, []).append((key, index))
    for members in by_label.values():
        members.sort()
        count = max(1, round(len(members) * share)) if len(members) > 1 else 0
        picked.extend(index for _key, index in members[:count])
    return np.array(sorted(picked), dtype=np.int64)


def _decode_chunk(args: tuple[str, list[str], int]) -> np.ndarray:
    url, digests, size = args
    store = open_content_store(url)
    draft = jpeg_draft({"jpeg_draft": JPEG_DRAFT}, size)  # what bundles record (package.bundle)
    out = np.empty((len(digests), size, size, 3), dtype=np.uint8)
    for i, digest in enumerate(digests):
        out[i] = square(decode(store.get(digest), min_side=1, draft=draft).image, size)
    return out


def _sweep(cache_root: Path) -> None:
    """Remove the half-filled folders of builds whose process died (``kill -9`` runs no
    cleanup); a live build's folder is locked by its process."""
    if cache_root.is_dir():
        for tmp in cache_root.glob(f"{_TMP}*"):
            if tmp.is_dir() and not is_locked(tmp / _OWNER):
                shutil.rmtree(tmp, ignore_errors=True)


def build_image_set(
    rows: Sequence[Row],
    classes: Sequence[str],
    *,
    version_id: str,
    size: int,
    content: ContentStore,
    artifacts_url: str,
    cache_root: Path,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> ImageSet:
    folder = cache_root / f"{version_id[:24]}-{size}"
    meta_path = folder / "meta.json"
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[r.label] for r in rows], dtype=np.int64)
    splits = np.array([r.split for r in rows])
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("format") == CACHE_FORMAT and meta.get("count") == len(rows):
            images = np.load(folder / "images.npy", mmap_mode="r")
            return ImageSet(images, labels, splits, tuple(rows), tuple(classes))
    _sweep(cache_root)
    name = uuid.uuid4().hex
    fresh = cache_root / f".new-{name}"  # locked before a sweep can see it as a .tmp- folder
    fresh.mkdir(parents=True)
    owner = try_lock(fresh / _OWNER)  # held while this process fills the folder
    tmp = cache_root / f"{_TMP}{name}"
    os.replace(fresh, tmp)
    try:
        images = np.lib.format.open_memmap(
            tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(rows), size, size, 3)
        )
        digests = [r.sha256 for r in rows]
        tasks = [
            (artifacts_url, digests[lo : lo + _CHUNK], size) for lo in range(0, len(rows), _CHUNK)
        ]
        done = 0
        if workers <= 1 or len(rows) < 1000:  # a spawned pool costs ~1 s to start
            results = map(_decode_chunk, tasks)
            for lo, block in zip(range(0, len(rows), _CHUNK), results, strict=True):
                images[lo : lo + len(block)] = block
                done += len(block)
                if progress:
                    progress(done, len(rows))
        else:
            context = multiprocessing.get_context("spawn")
            # the workers die with this process (kill -9 included): no orphan keeps decoding
            with ProcessPoolExecutor(
                workers, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),)
            ) as pool:
                for lo, block in zip(
                    range(0, len(rows), _CHUNK), pool.map(_decode_chunk, tasks), strict=True
                ):
                    images[lo : lo + len(block)] = block
                    done += len(block)
                    if progress:
                        progress(done, len(rows))
        images.flush()
        del images
        (tmp / "meta.json").write_text(
            json.dumps({"format": CACHE_FORMAT, "count": len(rows), "size": size})
        )
        (tmp / _OWNER).unlink()
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if owner is not None:
            os.close(owner)
    return ImageSet(
        np.load(folder / "images.npy", mmap_mode="r"), labels, splits, tuple(rows), tuple(classes)
    )
