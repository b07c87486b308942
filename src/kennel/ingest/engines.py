"""Where ingest's per-file work runs: the seam between the ingest logic and an executor.

The work is always :func:`kennel.ingest.validate.check_and_store` over chunks of files (decode,
validate, measure, hash, store the bytes content-addressed); an engine only decides where those
calls happen and hands the results back to the driver, which checkpoints and commits exactly as
before. So the same source gives the same version id on every engine.

- :class:`LocalEngine` (here): this process for small sources, else a process pool.
- :class:`kennel.ingest.ray_engine.RayEngine`: Ray tasks on a Ray cluster.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

from kennel.ingest.validate import (
    FileResult,
    Limits,
    WorkItem,
    check_and_store,
    init_worker,
    process_chunk,
)
from kennel.storage import ContentStore

Chunk = list[WorkItem]
Results = list[FileResult]  # one per file of a chunk, in the chunk's order
INLINE_BELOW = 400  # fewer files than this are checked in-process: spawning a pool costs ~1 s


@dataclass(frozen=True)
class Target:
    """What every chunk is checked against and where accepted bytes go."""

    content: ContentStore
    artifacts_url: str
    limits: Limits


class Engine(Protocol):
    """Runs ``check_and_store`` over chunks; results come back in the order chunks went in."""

    name: str
    # Whether every process that checks files shares this machine's disk: then a local file
    # goes to it as its path (``LocalFile``) and is read there, not by the driver.
    reads_local_files: bool
    # Whether a chunk's bytes are durable when its results come back. False: they were
    # written through this machine's page cache and the driver makes them durable, all
    # chunks at once, with ``ContentStore.sync`` before it records their results.
    stores_durably: bool

    def connected(self, target: Target) -> AbstractContextManager[None]:
        """Reach the executor, or raise before the caller writes anything; released on exit."""
        ...

    def map(
        self, target: Target, chunks: Iterable[Chunk], files: int
    ) -> Iterator[list[FileResult]]:
        """Check ``chunks`` (``files`` files in all); only valid inside ``connected``."""
        ...


class LocalEngine:
    """This machine: inline for one worker or a small source, else a spawn process pool."""

    name = "local"
    reads_local_files = True
    # Every worker writes to this machine's disk: one filesystem sync by the driver before
    # each checkpoint covers them all, instead of one per chunk in each worker.
    stores_durably = False

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)

    def connected(self, target: Target) -> AbstractContextManager[None]:
        return nullcontext()

    def map(
        self, target: Target, chunks: Iterable[Chunk], files: int
    ) -> Iterator[list[FileResult]]:
        if self.workers == 1 or files < INLINE_BELOW:
            for chunk in chunks:
                yield check_and_store(target.content, target.limits, chunk, durable=False)
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=init_worker,
            initargs=(target.artifacts_url, target.limits, os.getpid(), False),
        ) as pool:
            inflight: deque[Future[list[FileResult]]] = deque()
            for chunk in chunks:
                inflight.append(pool.submit(process_chunk, chunk))
                if len(inflight) >= 3 * self.workers:
                    yield inflight.popleft().result()
            for future in inflight:
                yield future.result()
