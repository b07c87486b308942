"""Where ingest's per-file work runs: the seam between the ingest logic and an executor.

The work is always :func:`kennel.ingest.validate.check_and_store` over chunks of files (decode,
validate, measure, hash, store the bytes content-addressed); an engine only decides where those
calls happen and hands the results back to the driver, which checkpoints and commits exactly as
before. So the same source gives the same version id on every engine.

- :class:`LocalEngine` (here): this process for small sources, else a process pool.
- :class:`kennel.ingest.ray_engine.RayEngine`: Ray tasks on a Ray cluster.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

from kennel.ingest.sources import Entry, Located, LocatingSource, Source
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
MANAGER_JOIN_S = 10.0  # a pool's manager thread ends within moments of its workers
INLINE_BELOW = 400  # fewer files than this are checked in-process: starting a pool costs ~1 s


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

    def expect(self, files: int) -> None:
        """A hint, inside ``connected``: about ``files`` files will follow. An engine may get
        ready for them now, while the driver finishes sorting out what it can skip."""
        ...

    def map(
        self, target: Target, chunks: Iterable[Chunk], files: int
    ) -> Iterator[list[FileResult]]:
        """Check ``chunks`` (``files`` files in all); only valid inside ``connected``."""
        ...


def _quiet_wakeup() -> None:
    """Python 3.11's process pool races itself at the interpreter's exit: ``_python_exit``
    wakes each pool's manager thread through its pipe while that thread, ending, closes the
    pipe; a second Ctrl-C during an ingest's shutdown made it a traceback (EBADF) after the
    one-line message. Python 3.12 takes a lock there; here a wakeup of a pipe closed
    meanwhile is the no-op it was meant to be."""
    from concurrent.futures import process

    wakeup = process._ThreadWakeup.wakeup

    def quiet(self: Any) -> None:
        try:
            wakeup(self)
        except OSError:
            if not self._closed:
                raise

    process._ThreadWakeup.wakeup = quiet  # type: ignore[method-assign]


if sys.version_info < (3, 12):
    _quiet_wakeup()

# Libraries whose native thread pools are not known to survive a fork in a usable state: a
# process that has loaded any of them (a pipeline that trained, a service) spawns its workers.
FORK_UNSAFE = ("torch", "onnxruntime", "cv2")


def _close(pool: ProcessPoolExecutor, failed: bool) -> None:
    """Shut ``pool`` down: after its work, waiting for its workers to finish; after an error or
    an interrupt, ending them first (``_end``). A second Ctrl-C that cut a waiting shutdown
    short left workers nobody would ever tell to stop, which the interpreter then waited for
    at exit, for ever; so does one arriving now, which ends them and goes on."""
    if not failed:
        try:
            pool.shutdown(wait=True, cancel_futures=True)
            return
        except BaseException:
            _end(pool)
            raise
    _end(pool)


def _end(pool: ProcessPoolExecutor) -> None:
    """End the workers, then shut ``pool`` down without waiting. Its futures are left as they
    are: the pool's manager thread fails them all once it sees the workers gone, and Python
    3.11's raises (and prints its traceback) where one was cancelled meanwhile. That thread
    is then let finish closing its pipes: at the interpreter's exit Python 3.11 wakes it
    through one, and raced it closing it (a traceback, EBADF)."""
    # the pool keeps its processes by pid (ProcessPoolExecutor has no public way before 3.14)
    processes = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        with contextlib.suppress(OSError, ValueError):
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=False)
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None:
        manager.join(MANAGER_JOIN_S)


def start_method() -> str:
    """How the pool's workers start: ``fork`` on Linux while this process runs no other Python
    thread and has loaded none of ``FORK_UNSAFE``, else ``spawn``. A forked worker starts in
    milliseconds with the driver's modules already imported, where a spawned one starts a new
    interpreter and imports them again (~0.5 s of CPU each, a tenth of a small append). No
    Python thread can hold a lock across the fork then, and the native threads of what an
    ingest has loaded by then (Arrow's pool, jemalloc, OpenBLAS) re-arm themselves in the
    child; a worker imports OpenCV itself, on first use."""
    if (
        sys.platform.startswith("linux")
        and threading.active_count() == 1
        and not any(name in sys.modules for name in FORK_UNSAFE)
        and (sys.version_info < (3, 12) or _os_threads() == 1)
    ):
        return "fork"
    return "spawn"


def _os_threads() -> int:
    """This process's threads, native ones too. From Python 3.12 a fork while any other runs
    is deprecated (a warning, and a fork that later versions refuse): there kennel forks only
    a process with none, whatever it knows of the libraries' own threads."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


class LocalEngine:
    """This machine: inline for one worker or a small source, else a process pool (see
    ``start_method``), kept from ``expect`` (or the first ``map``) to the end of
    ``connected``."""

    name = "local"
    reads_local_files = True
    # Every worker writes to this machine's disk: one filesystem sync by the driver before
    # each checkpoint covers them all, instead of one per chunk in each worker.
    stores_durably = False

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)
        self._target: Target | None = None
        self._pool: ProcessPoolExecutor | None = None

    @contextmanager
    def connected(self, target: Target) -> Iterator[None]:
        self._target = target
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            self._target = None
            if self._pool is not None:
                pool, self._pool = self._pool, None
                _close(pool, failed)

    def expect(self, files: int) -> None:
        """Start the workers now when ``files`` is enough for a pool: spawning them and their
        imports (~1 s) then overlap the rest of the driver's preparation, on another core."""
        if self.workers > 1 and files >= INLINE_BELOW and self._target is not None:
            pool = self._started(self._target)
            for _ in range(self.workers):
                pool.submit(os.getpid)  # a worker starts for each task no idle one can take

    def _started(self, target: Target) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context(start_method()),
                initializer=init_worker,
                initargs=(target.artifacts_url, target.limits, os.getpid(), False),
            )
        return self._pool

    def map(
        self, target: Target, chunks: Iterable[Chunk], files: int
    ) -> Iterator[list[FileResult]]:
        if self.workers == 1 or files < INLINE_BELOW:
            for chunk in chunks:
                yield check_and_store(target.content, target.limits, chunk, durable=False)
            return
        pool = self._started(target)
        inflight: deque[Future[list[FileResult]]] = deque()
        for chunk in chunks:
            inflight.append(pool.submit(process_chunk, chunk))
            if len(inflight) >= 3 * self.workers:
                yield inflight.popleft().result()
        while inflight:
            yield inflight.popleft().result()
        # stopped early, the chunks left are dropped by ``connected``'s end: cancelled by a
        # shutdown after the caller's own stop, ended with the workers after an error


def source_chunks(
    source: Source, entries: list[tuple[int, Entry]], size: int, *, local_files: bool
) -> Iterator[Chunk]:
    """The entries in chunks of ``size``, each with its bytes; or, when ``local_files`` (the
    engine's workers share this disk) and the source can name them, a local file's path for
    the worker to read: the driver then neither reads nor pickles any local file's bytes."""
    seq_of = {e.uri: s for s, e in entries}
    listed = [e for _s, e in entries]
    reads: Iterator[tuple[Entry, Located]] = (
        source.locate(listed)
        if local_files and isinstance(source, LocatingSource)
        else source.read(listed)
    )
    while batch := list(islice(reads, size)):
        yield [(seq_of[e.uri], e.uri, e.label, e.attrs, data) for e, data in batch]
