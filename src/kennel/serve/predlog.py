"""The prediction log, written ahead: a prediction's record is appended to an on-disk journal
before the service answers, then copied to the metadata store in batches by a background
thread. Appends are group-committed: a committer thread writes the records that arrived during
the previous append with one write, so concurrent requests share it. With ``sync`` each append
is also fdatasynced before the answer (nothing answered is lost, even to a power cut); without
it (``serve.log_sync: false``, the default) a kill -9 still loses nothing, the OS has the bytes,
and the drain thread fdatasyncs what was appended once every ``flush_s``, so a power cut loses
at most the records answered in about the last ``flush_s``.
When the database is unreachable the journal waits on disk and is drained, without duplicates
(prediction ids are primary keys), once the database answers again. Kept input images
(``serve.keep_inputs``) travel in the journal with their records and are uploaded to the
artifact store before the records are written: while the store is unreachable, records and
images wait together, so the log never holds a record whose input is missing, and an image
uploaded twice (a retry after a lost answer) is still one content-addressed object.

A process that dies (even by kill -9) leaves its journal behind; the next log opened on the same
folder, typically the restarted service, adopts it. Files, under ``spool`` without its suffix
(e.g. ``.kennel/spool/production/``): ``OWNER.lock``, locked (flock) for as long as its
process lives, and that owner's segments ``OWNER.NNNNNNNN.jsonl``, sealed in turn by the drain
thread. Several services may share a folder: a segment is adopted only when no process holds
its owner's lock. The lines' format is ``kennel.serve.journal``'s.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import secrets
import threading
import time
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from kennel.db import Database
from kennel.db.predictions import PredictionStore
from kennel.errors import StorageError
from kennel.serve import journal
from kennel.serve.diskroom import DiskRoom
from kennel.serve.logwriter import REJECTION, LogStats, RowWriter
from kennel.serve.predrows import decode_embedding as decode_embedding
from kennel.serve.predrows import row_of as row_of
from kennel.storage import ContentStore

log = logging.getLogger(__name__)
_BATCH = 512
# Rows of own segments kept in memory, up to this many journal bytes, so that the drain does
# not read back and parse what the committer has just written; past it (the database down
# for long), segments are read from disk as adopted ones are.
_HELD_BYTES = 32 * 1024 * 1024


_SEGMENT = re.compile(r"^(?P<owner>[0-9]+-[0-9a-f]{8})\.(?:[0-9]{8}\.jsonl|lock)\Z")
_Waiting = tuple[dict[str, Any], "Future[None]"]


class PredictionLog:
    def __init__(
        self,
        db: Database,
        spool: Path,
        *,
        flush_s: float = 0.5,
        inputs: ContentStore | None = None,
        sync: bool = True,
        min_free: int = 0,
    ) -> None:
        self.db = db
        # False: written before the answer, fdatasynced by the drain every flush_s
        self.sync = sync
        self.inputs = inputs  # where kept input images go (content-addressed), if anywhere
        self.spool = spool  # the single spool file of earlier versions, drained if present
        self.folder = spool.with_suffix("")
        self.flush_s = flush_s
        self.stats = LogStats()
        local = getattr(inputs.blobs, "root", None) if inputs is not None else None
        self.room = DiskRoom([self.folder, *([local] if isinstance(local, Path) else [])], min_free)
        self._writer = RowWriter(PredictionStore(db), inputs, self.stats)
        self._owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._cond = threading.Condition()  # guards _waiting, _appending, _closing
        self._waiting: list[_Waiting] = []
        self._appending = False
        self._closing = False
        self._seg_lock = threading.Lock()  # guards the open segment and _sealed
        self._segment = 0
        self._handle: IO[bytes] | None = None
        self._open_rows = 0
        # without sync: whether the open segment was appended to since the drain last synced
        # it, and dup'd descriptors of segments sealed since then, to sync unless drained
        self._dirty = False
        self._unsynced: dict[Path, int] = {}
        self._sealed: list[Path] = []  # own segments waiting for the database, oldest first
        # the rows of own segments as written (None: read the segment from disk), and the
        # journal bytes they take there
        self._held: dict[Path, list[dict[str, Any]] | None] = {}
        self._held_sizes: dict[Path, int] = {}
        self._held_bytes = 0
        self._lock = threading.Lock()  # one drain at a time
        self._failed: set[Path] = set()  # segments a database write failed for (counted once)
        self._progress: dict[Path, int] = {}  # rows of a segment already in the database
        self._lockfd: int | None = None
        self._stopped = False
        self._stop = threading.Event()
        self._committer = threading.Thread(
            target=self._commit_loop, name="kennel-predlog-commit", daemon=True
        )
        self._thread = threading.Thread(target=self._loop, name="kennel-predlog", daemon=True)

    def start(self) -> None:
        if self._lockfd is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        # Locked under a name no other log looks at, then renamed into place: a log sharing the
        # folder that saw OWNER.lock unlocked for an instant would take the owner for dead,
        # delete its lock and later drain (and delete) the segment it is still appending to.
        hidden = self.folder / f".{self._owner}.lock"
        fd = os.open(hidden, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until stop() or death: our segments are ours
        os.replace(hidden, self.folder / f"{self._owner}.lock")
        self._lockfd = fd
        self._committer.start()
        self._thread.start()

    def add(self, row: dict[str, Any]) -> Future[None]:
        """Queue ``row``; the future completes once it is durable (see ``sync``), or fails
        with a StorageError when it could not be written. Never blocks the caller."""
        done: Future[None] = Future()
        with self._cond:
            if self._closing:
                done.set_exception(StorageError("the prediction log is closed"))
                return done
            self._waiting.append((row, done))
            self.stats.queued += 1
            self._cond.notify()
        return done

    async def commit(self, row: dict[str, Any]) -> None:
        """Add ``row`` and wait, off the event loop, until it is durable."""
        await asyncio.wrap_future(self.add(row))

    def reject(self, *, environment: str, source: str, reason: str) -> None:
        """Log an input that could not be used (monitoring counts decode failures)."""
        self.add(
            {
                "kind": REJECTION,
                "at": datetime.now(UTC),
                "environment": environment,
                "source": source,
                "reason": reason[:2000],
            }
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Journal what is queued, drain what the database takes, release the journal. Records
        the database did not take stay on disk for the next log on this folder."""
        self.start()  # a log stopped before it started still journals what it was given
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._committer.join(timeout)
        self._stop.set()
        self._thread.join(timeout)
        self._drain_once()
        self._sync_appended()  # what the database did not take stays on disk, synced
        with self._seg_lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
            if self._open_rows:
                self._sealed.append(self._segment_path(self._segment))
            clean = not self._sealed
        if self._lockfd is not None:
            if clean:
                (self.folder / f"{self._owner}.lock").unlink(missing_ok=True)
            os.close(self._lockfd)  # releases the lock: a later log adopts what is left
            self._lockfd = None

    def spooled_lines(self) -> int:
        """Records on disk that are not in the database yet (this folder, every owner)."""
        paths = [p for p in self._files() if p.suffix == ".jsonl"]
        return sum(journal.count_lines(p) for p in [*paths, self.spool])

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record given so far is in the database (True) or the timeout passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                busy = bool(self._waiting) or self._appending
            with self._seg_lock:
                busy = busy or bool(self._open_rows or self._sealed)
            if not busy and self.spooled_lines() == 0:
                with self._lock:
                    return True
            time.sleep(0.02)
        return False

    # -- the committer: group commit into the open segment --------------------------------

    def _commit_loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closing:
                    self._cond.wait()
                batch, self._waiting = self._waiting, []
                if not batch:
                    return
                self._appending = True
            try:
                self._append(batch)
            finally:
                with self._cond:
                    self._appending = False

    def _append(self, batch: list[_Waiting]) -> None:
        try:
            rows = self.room.fit([row for row, _ in batch])  # inputs kept while there is room
            data = "".join(journal.to_json(row) + "\n" for row in rows).encode()
            with self._seg_lock:
                if self._handle is None:
                    self._handle = self._open_segment()
                path = self._segment_path(self._segment)
                try:
                    self._handle.write(data)
                    self._handle.flush()
                    if self.sync:
                        journal.datasync(self._handle.fileno())
                    else:
                        self._dirty = True
                except OSError:
                    self._forget(path)  # what reached the disk is what gets drained
                    self._seal()  # never append behind a torn write: start a new segment
                    raise
                self._open_rows += len(batch)
                self._hold(path, rows, len(data))
        except (OSError, TypeError, ValueError) as exc:
            log.error("prediction log: cannot journal %d records: %s", len(batch), exc)
            error = StorageError(f"cannot journal the prediction: {exc}")
            for _row, done in batch:
                done.set_exception(error)
            return
        for _row, done in batch:
            done.set_result(None)

    def _hold(self, path: Path, rows: list[dict[str, Any]], size: int) -> None:
        """Keep ``rows``, just made durable in ``path``, for the drain (caller holds
        _seg_lock). A segment is held whole or not at all: one that would pass the bound
        (the open segment grows while the database is down) is read from disk instead."""
        held = self._held.setdefault(path, [])
        if held is None:
            return
        if self._held_bytes + size > _HELD_BYTES:
            self._forget(path)
            return
        held.extend(rows)
        self._held_bytes += size
        self._held_sizes[path] = self._held_sizes.get(path, 0) + size

    def _forget(self, path: Path) -> None:
        """Drain ``path`` from disk from now on (caller holds _seg_lock)."""
        if self._held.get(path) is not None:
            self._held_bytes -= self._held_sizes.pop(path, 0)
        self._held[path] = None

    def _segment_path(self, n: int) -> Path:
        return self.folder / f"{self._owner}.{n:08d}.jsonl"

    def _open_segment(self) -> IO[bytes]:
        handle = open(self._segment_path(self._segment), "ab")  # noqa: SIM115 - kept open
        journal.fsync_dir(self.folder)  # the new name must survive a crash too, not just its bytes
        return handle

    def _seal(self) -> None:
        """Close the open segment and queue it for the database (caller holds _seg_lock)."""
        if self._handle is None:
            return
        if self._dirty:
            self._unsynced[self._segment_path(self._segment)] = os.dup(self._handle.fileno())
            self._dirty = False
        self._handle.close()
        self._handle = None
        self._sealed.append(self._segment_path(self._segment))
        self._segment += 1
        self._open_rows = 0

    # -- the drain thread: journal -> database ----------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._drain_once()
            self._sync_appended()  # what the database did not take this pass
            self._stop.wait(self.flush_s)

    def _sync_appended(self) -> None:
        """Without ``sync``: fdatasync what the committer appended since the last pass and the
        database has not taken (a drained segment is durable there), off the request path
        (descriptors dup'd under the lock, synced outside it): a power cut loses at most the
        last ``flush_s`` of answered records, also while the database is down."""
        with self._seg_lock:
            fds, self._unsynced = list(self._unsynced.values()), {}
            if self._dirty and self._handle is not None:
                fds.append(os.dup(self._handle.fileno()))
            self._dirty = False
        for fd in fds:
            try:
                journal.datasync(fd)
            except OSError as exc:
                log.error("prediction log: cannot sync the journal: %s", exc)
            finally:
                os.close(fd)

    def _drain_once(self) -> None:
        with self._lock:
            self._adopt()
            if not self._drain_sealed():
                return  # database still down: the open segment keeps growing meanwhile
            with self._seg_lock:
                if self._open_rows:
                    self._seal()
            self._drain_sealed()

    def _drain_sealed(self) -> bool:
        with self._seg_lock:
            sealed = list(self._sealed)
        for path in sealed:
            with self._seg_lock:
                held = self._held.get(path)
            if not self._drain_file(path, rows=None if held is None else list(held)):
                return False
            with self._seg_lock:
                self._sealed.remove(path)
                self._forget(path)
                del self._held[path]
                unsynced = self._unsynced.pop(path, None)
            if unsynced is not None:  # in the database now: nothing of it to sync
                os.close(unsynced)
            path.unlink(missing_ok=True)
        return True

    def _adopt(self) -> None:
        """Drain the journals of processes that died, and the spool of earlier versions."""
        owners: dict[str, list[Path]] = {}
        for path in self._files():
            owner = _owner_of(path)
            if owner != self._owner:
                owners.setdefault(owner, [])
                if path.suffix == ".jsonl":
                    owners[owner].append(path)
        for owner, segments in owners.items():
            lock = self.folder / f"{owner}.lock"
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive and drains its own journal
                for path in sorted(segments):
                    if not self._drain_file(path, adopted=True):
                        return
                    path.unlink(missing_ok=True)
                lock.unlink(missing_ok=True)
            finally:
                os.close(fd)
        if self.spool.exists() and self._drain_file(self.spool, adopted=True):
            self.spool.unlink(missing_ok=True)

    def _files(self) -> list[Path]:
        try:
            return [self.folder / n for n in os.listdir(self.folder) if _SEGMENT.match(n)]
        except FileNotFoundError:
            return []

    def _drain_file(
        self, path: Path, *, adopted: bool = False, rows: list[dict[str, Any]] | None = None
    ) -> bool:
        """Write ``path``'s rows to the database (``rows``: the same rows, held in memory)."""
        rows = list(journal.read(path)) if rows is None else rows
        done = self._progress.get(path, 0)
        for lo in range(done, len(rows), _BATCH):
            if not self._writer.write(rows[lo : lo + _BATCH]):
                if path not in self._failed:
                    self._failed.add(path)
                    self.stats.spooled += len(rows) - lo
                self._progress[path] = lo
                return False
        self.stats.written += len(rows) - done
        if adopted or path in self._failed:
            self.stats.replayed += len(rows) - done
        self._progress.pop(path, None)
        self._failed.discard(path)
        return True


def _owner_of(path: Path) -> str:
    return path.name.split(".", 1)[0]
