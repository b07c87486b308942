"""Room on disk for kept input images (``serve.keep_inputs``): a service that keeps every
distinct image it is sent fills its disk, in time or at once at a client's will. Below
``serve.inputs_min_free_mb`` of free space where the journal or the local content store is,
a record keeps its input's sha256 but not the image's bytes (the prediction itself is always
logged); images are kept again once there is room."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
# why a logged prediction's input image may be missing, for whoever asks for it
NOT_KEPT = (
    "serve.keep_inputs was off, the disk was short of serve.inputs_min_free_mb when it was "
    "logged, or it came from a pattern that keeps none, such as a frame of kennel watch"
)


class DiskRoom:
    """Whether each of ``paths``' filesystems has ``min_free`` bytes free, looked at no more
    than once every ``every_s`` (0 bytes: always)."""

    def __init__(self, paths: Iterable[Path], min_free: int, every_s: float = 1.0) -> None:
        self.paths = list(dict.fromkeys(paths))
        self.min_free = min_free
        self.every_s = every_s
        self.dropped = 0  # input images not kept for want of room
        self.on_drop: Callable[[], object] = lambda: None  # told of each (a metric)
        self._ok = True
        self._seen = float("-inf")
        self._lock = threading.Lock()

    def free(self) -> int | None:
        """The least free space (bytes, for an unprivileged writer) among the paths."""
        sizes = []
        for path in self.paths:
            try:
                stat = os.statvfs(path)
            except OSError:  # not made yet, or gone: nothing to tell
                continue
            sizes.append(stat.f_bavail * stat.f_frsize)
        return min(sizes) if sizes else None

    def ok(self) -> bool:
        if self.min_free <= 0:
            return True
        with self._lock:
            now = time.monotonic()
            if now - self._seen >= self.every_s:
                self._seen = now
                free = self.free()
                ok = free is None or free >= self.min_free
                if ok != self._ok:
                    shown = f"{(free or 0) / 2**20:,.0f} MiB free"
                    if ok:
                        log.warning("prediction log: %s, keeping input images again", shown)
                    else:
                        log.warning(
                            "prediction log: %s (serve.inputs_min_free_mb is %d): input images "
                            "are not kept until there is room", shown, self.min_free // 2**20
                        )  # fmt: skip
                self._ok = ok
            return self._ok

    def fit(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` as they may be kept: without their input's bytes while there is no room."""
        if not any("input" in row for row in rows) or self.ok():
            return rows
        kept = []
        for row in rows:
            if "input" in row:
                row = {k: v for k, v in row.items() if k != "input"}  # its sha256 stays
                self.dropped += 1
                self.on_drop()
            kept.append(row)
        return kept
