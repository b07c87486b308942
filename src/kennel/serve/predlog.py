"""The prediction log: every prediction is queued in memory and written to the metadata store in
batches by a background thread, off the request path. When the database is unreachable the
batch is appended (and fsynced) to a JSON-lines spool on disk instead, and replayed, without
duplicates (prediction ids are primary keys), once the database answers again.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from kennel.db import Database
from kennel.db.bulk import insert_ignore
from kennel.db.schema import InputRejectionRow, PredictionRow
from kennel.errors import KennelError
from kennel.serve.runtime import Prediction
from kennel.storage import ContentStore

log = logging.getLogger(__name__)
_BATCH = 512
REJECTION = "rejection"


def row_of(
    p: Prediction,
    *,
    environment: str,
    source: str,
    input_sha256: str | None,
    at: datetime | None = None,
    data: bytes | None = None,
) -> dict[str, Any]:
    """A prediction log row; ``data`` (the input image) is kept when the log has a store."""
    row = {
        "id": p.id,
        "at": at or datetime.now(UTC),
        "environment": environment,
        "model": p.model,
        "version": p.version,
        "label": p.label,
        "confidence": p.confidence,
        "probabilities": p.probabilities,
        "quality": p.quality,
        "source": source,
        "latency_ms": p.latency_ms,
        "input_sha256": input_sha256,
        "embedding": p.embedding.astype("<f2").tobytes(),
    }
    if data is not None:
        row["input"] = data
    return row


def decode_embedding(data: bytes | None) -> np.ndarray:
    return np.frombuffer(data or b"", dtype="<f2").astype(np.float32)


_BINARY = ("embedding", "input")


def _to_json(row: dict[str, Any]) -> str:
    out = {**row, "at": row["at"].isoformat()}
    for key in _BINARY:
        if key in row:
            out[key] = base64.b64encode(row[key] or b"").decode()
    return json.dumps(out)


def _from_json(line: str) -> dict[str, Any]:
    row: dict[str, Any] = json.loads(line)
    row["at"] = datetime.fromisoformat(row["at"])
    for key in _BINARY:
        if key in row:
            row[key] = base64.b64decode(row[key])
    return row


@dataclass
class LogStats:
    queued: int = 0
    written: int = 0
    spooled: int = 0
    replayed: int = 0
    db_errors: int = 0


class PredictionLog:
    def __init__(
        self,
        db: Database,
        spool: Path,
        *,
        flush_s: float = 0.5,
        max_queue: int = 100_000,
        inputs: ContentStore | None = None,
    ) -> None:
        self.db = db
        self.inputs = inputs  # where kept input images go (content-addressed), if anywhere
        self.spool = spool
        self.flush_s = flush_s
        self.stats = LogStats()
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(max_queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kennel-predlog", daemon=True)
        self._lock = threading.Lock()
        spool.parent.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, row: dict[str, Any]) -> None:
        """Never blocks the caller: when even the memory queue is full, spool synchronously."""
        self.stats.queued += 1
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self._spool([row])

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
        self._stop.set()
        self._thread.join(timeout)
        self._drain_once()  # anything that arrived during shutdown

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def spooled_lines(self) -> int:
        try:
            with open(self.spool, encoding="utf-8") as handle:
                return sum(1 for _ in handle)
        except FileNotFoundError:
            return 0

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue and the spool are empty (True) or the timeout passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.empty() and not self.spool.exists():
                with self._lock:
                    return True
            time.sleep(0.02)
        return False

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._drain_once()
            self._stop.wait(self.flush_s)

    def _drain_once(self) -> None:
        with self._lock:
            self._replay()
            while True:
                batch: list[dict[str, Any]] = []
                while len(batch) < _BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if not batch:
                    return
                if self.spool.exists() or not self._write(batch):
                    self._spool(batch)  # keep order: once spooling, spool until replayed
                else:
                    self.stats.written += len(batch)

    def _write(self, rows: list[dict[str, Any]]) -> bool:
        predictions = [r for r in rows if r.get("kind") != REJECTION]
        rejections = [
            {k: v for k, v in r.items() if k != "kind"} for r in rows if r.get("kind") == REJECTION
        ]
        try:
            if self.inputs is not None:  # images first: a logged row never lacks its input
                # one durable batch (one filesystem sync), not two fsyncs per image
                self.inputs.put_many([r["input"] for r in predictions if r.get("input")])
            with self.db.session() as s:
                insert_ignore(
                    s,
                    PredictionRow.__table__,  # type: ignore[arg-type]
                    [{k: v for k, v in r.items() if k != "input"} for r in predictions],
                )
                if rejections:
                    s.execute(InputRejectionRow.__table__.insert(), rejections)  # type: ignore[attr-defined]
            return True
        except (KennelError, OSError) as exc:
            self.stats.db_errors += 1
            log.warning("prediction log: database unavailable (%s); spooling", exc)
            return False

    def _spool(self, rows: list[dict[str, Any]]) -> None:
        with open(self.spool, "a", encoding="utf-8") as handle:
            handle.write("".join(_to_json(r) + "\n" for r in rows))
            handle.flush()
            os.fsync(handle.fileno())
        self.stats.spooled += len(rows)

    def _replay(self) -> None:
        if not self.spool.exists():
            return
        with open(self.spool, encoding="utf-8") as handle:
            lines = [line for line in handle if line.strip()]
        rows = []
        for line in lines:
            try:
                rows.append(_from_json(line))
            except (ValueError, KeyError):  # a torn last line from a crash mid-append
                log.warning("prediction log: skipping an unreadable spool line")
        for lo in range(0, len(rows), _BATCH):
            if not self._write(rows[lo : lo + _BATCH]):
                return  # still down: keep the spool (already written rows are ignored on replay)
        self.spool.unlink(missing_ok=True)
        self.stats.replayed += len(rows)
