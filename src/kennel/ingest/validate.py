"""The transform step of ingest, one file at a time: hash, decode, check, measure. Pure apart
from storing the original bytes of accepted images in the content store the worker was given:
a quarantined file's bytes are never stored (it may be anything a lake holds, secrets included);
its reason, size and digest are recorded instead."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

from kennel.imaging import ImageRejected, decode, quality
from kennel.ingest.lifeline import die_with_parent
from kennel.ingest.sources.base import LocalFile
from kennel.storage import ContentStore, open_content_store, sha256_hex

OK = "ok"
QUARANTINED = "quarantined"
_STATS_DRAFT = (256, 256)


@dataclass(frozen=True)
class Limits:
    labels: tuple[str, ...]
    min_side: int
    max_pixels: int
    max_file_bytes: int


@dataclass(frozen=True)
class FileResult:
    seq: int
    uri: str
    label: str | None
    status: str
    reason: str | None = None
    sha256: str | None = None
    size: int = 0
    item: dict[str, Any] | None = None  # format, mode, width, height, quality stats
    attrs: dict[str, str] = field(default_factory=dict)


def check(
    seq: int,
    uri: str,
    label: str | None,
    data: bytes | str,
    limits: Limits,
    attrs: dict[str, str] | None = None,
) -> tuple[FileResult, bytes | None]:
    """Judge one file; returns the result and the bytes worth keeping (None unless accepted)."""
    attrs = attrs or {}

    def rejected(reason: str, digest: str | None = None, size: int = 0) -> FileResult:
        return FileResult(seq, uri, label, QUARANTINED, reason, digest, size, None, attrs)

    if isinstance(data, str):
        return rejected(data), None
    size = len(data)
    if size > limits.max_file_bytes:
        return rejected(f"file too large: {size} bytes (limit {limits.max_file_bytes})"), None
    digest = sha256_hex(data)
    if label is None:
        return rejected("no label: none in its path or manifest row", digest, size), None
    if limits.labels and label not in limits.labels:
        allowed = ", ".join(limits.labels)
        return rejected(f"unknown label: {label!r} (allowed: {allowed})"), None
    try:
        decoded = decode(
            data,
            max_pixels=limits.max_pixels,
            min_side=limits.min_side,
            draft=_STATS_DRAFT,
            # RGB, then luma, as the serving Predictor measures a picture: a colour JPEG's
            # luma taken straight from the decoder is cheaper but up to 2.5 % apart in
            # sharpness on saturated pictures, enough for the drift tests to flag windows of
            # the very distribution the reference came from
            grey=False,
        )
    except ImageRejected as exc:
        return rejected(str(exc), digest, size), None
    stats = quality(decoded.image)
    item = {
        "format": decoded.format,
        "mode": decoded.mode,
        "width": decoded.width,
        "height": decoded.height,
        "brightness": stats.brightness,
        "contrast": stats.contrast,
        "sharpness": stats.sharpness,
        "phash": stats.phash,
    }
    return FileResult(seq, uri, label, OK, None, digest, size, item, attrs), data


# Worker-process state, set once by ``init_worker`` (each process opens its own store handle).
_store: ContentStore | None = None
_limits: Limits | None = None
_durable = True


def init_worker(artifacts_url: str, limits: Limits, parent_pid: int, durable: bool = True) -> None:
    global _store, _limits, _durable
    # A worker is stopped by its driver: Ctrl-C (SIGINT to the whole process group) is the
    # driver's to handle, which then ends its workers with SIGTERM, their default (a forked
    # worker inherits the driver's own SIGTERM handler, which stops a command cleanly)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(parent_pid)
    _store = open_content_store(artifacts_url)
    _limits = limits
    _durable = durable


WorkItem = tuple[int, str, str | None, dict[str, str], bytes | str | LocalFile]


def process_chunk(chunk: list[WorkItem]) -> list[FileResult]:
    """Check a chunk of files and store their bytes; runs in a worker process."""
    assert _store is not None and _limits is not None, "init_worker was not called"
    return check_and_store(_store, _limits, chunk, durable=_durable)


def check_and_store(
    store: ContentStore, limits: Limits, chunk: list[WorkItem], *, durable: bool = True
) -> list[FileResult]:
    """Check each file (reading those sent as a ``LocalFile``), then store the bytes worth
    keeping in one durable batch (``durable=False``: durable once ``store.sync()`` returns,
    which the caller must call before recording the results)."""
    results, keep, digests = [], [], []
    folders: dict[str, str] = {}
    for seq, uri, label, attrs, data in chunk:
        read = data.read(folders) if isinstance(data, LocalFile) else data
        result, kept = check(seq, uri, label, read, limits, attrs)
        results.append(result)
        if kept is not None and result.sha256 is not None:
            keep.append(kept)
            digests.append(result.sha256)  # hashed by ``check`` a moment ago
    store.put_many(keep, durable=durable, digests=digests)
    return results
