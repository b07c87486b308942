"""The prediction log's group commit: a record's future completes only once its line is synced,
records arriving during a sync share the next one, and the drain writes the same rows whether
it takes them from memory (what the committer just wrote) or reads the journal back."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from kennel.db.schema import PredictionRow
from kennel.serve import journal, predlog
from kennel.serve.predlog import PredictionLog, row_of
from kennel.serve.runtime import Prediction
from kennel.wiring import Workspace


def _row(seed: int) -> dict[str, Any]:
    p = Prediction(
        id=uuid.uuid4().hex,
        label="dog" if seed % 2 else "cat",
        confidence=0.5 + seed / 100,
        probabilities={"cat": 0.5 - seed / 100, "dog": 0.5 + seed / 100},
        model="pets",
        version=1,
        latency_ms=1.25 * seed,
        quality={"brightness": 100.0 + seed, "width": 64.0, "height": 48.0},
        embedding=np.arange(8, dtype=np.float32) * seed,
        pet=True,
        pet_score=0.75,
    )
    return row_of(p, environment="production", source=f"s{seed}", input_sha256="ab" * 32)


def _kept(workspace: Workspace, spool: Path) -> set[str]:
    """The ids of the records in the journal's segments or already in the database."""
    segments = spool.with_suffix("").glob("*.jsonl")
    on_disk = {row["id"] for segment in segments for row in journal.read(segment)}
    with workspace.db.session() as s:
        return on_disk | set(s.scalars(select(PredictionRow.id)))


def test_no_record_is_answered_before_its_sync_and_waiting_ones_share_one(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool" / "production.jsonl"
    log = PredictionLog(workspace.db, spool, flush_s=3600)
    syncing, release = threading.Event(), threading.Event()
    syncs: list[int] = []
    real = journal.datasync

    def held_sync(fd: int) -> None:
        syncs.append(fd)
        syncing.set()
        assert release.wait(10)
        real(fd)

    monkeypatch.setattr(journal, "datasync", held_sync)
    log.start()
    try:
        rows = [_row(i) for i in range(9)]
        first = log.add(rows[0])
        assert syncing.wait(10)
        later = [log.add(row) for row in rows[1:]]  # arrive while the first sync runs
        time.sleep(0.1)
        assert not first.done() and not any(f.done() for f in later)  # nothing answered yet
        release.set()
        for future in [first, *later]:
            future.result(10)
        assert len(syncs) == 2  # the eight that waited were made durable by one sync
        # each answered record is on disk (or already drained from there to the database)
        assert {r["id"] for r in rows} <= _kept(workspace, spool)
    finally:
        release.set()
        log.stop()


def _recording_syncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(thread name, file) of each journal sync, the sync itself done for real."""
    syncs: list[tuple[str, str]] = []
    real = journal.datasync

    def recording(fd: int) -> None:
        syncs.append((threading.current_thread().name, os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(journal, "datasync", recording)
    return syncs


def test_without_log_sync_a_record_is_written_before_its_answer_which_waits_for_no_sync(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve.log_sync: false``: the line is in the journal file (the OS has it, which no
    crash of the process can take back) when the future completes; the committer, which the
    answer waits for, never syncs."""
    spool = tmp_path / "spool" / "production.jsonl"
    syncs = _recording_syncs(monkeypatch)
    log = PredictionLog(workspace.db, spool, flush_s=3600, sync=False)
    log.start()
    try:
        rows = [_row(i) for i in range(5)]
        for row in rows:
            log.add(row).result(10)
            # in a journal file, read by another descriptor (or already drained from there)
            assert row["id"] in _kept(workspace, spool)
        assert not [name for name, _ in syncs if name == "kennel-predlog-commit"]
    finally:
        log.stop()


def test_without_log_sync_the_drain_syncs_the_journal_every_flush_also_with_the_database_down(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window a power cut can take is one ``flush_s``: the drain thread fdatasyncs what
    was appended, also while the database refuses every write and the journal only grows."""
    spool = tmp_path / "spool" / "production.jsonl"
    syncs = _recording_syncs(monkeypatch)
    log = PredictionLog(workspace.db, spool, flush_s=0.05, sync=False)
    monkeypatch.setattr(log._writer, "write", lambda rows: False)  # the database is down
    log.start()
    try:
        for burst in range(3):
            rows = [_row(10 * burst + i) for i in range(4)]
            for future in [log.add(row) for row in rows]:
                future.result(10)
            synced_before = len(syncs)
            deadline = time.monotonic() + 5
            while len(syncs) == synced_before and time.monotonic() < deadline:
                time.sleep(0.01)
            name, path = syncs[-1]
            assert name == "kennel-predlog" and path.endswith(".jsonl")
            assert {r["id"] for r in rows} <= _kept(workspace, spool)
        assert log.stats.written == 0 and log.spooled_lines() == 12
    finally:
        log.stop()


@pytest.mark.parametrize(
    ("held_bytes", "flush_s", "from_disk"),
    [(predlog._HELD_BYTES, 0.05, False), (0, 0.05, True), (1500, 3600, True)],
    ids=["in-memory", "from-disk", "bound-passed"],
)
def test_the_drain_writes_the_journal_rows_from_memory_or_disk_alike(
    workspace: Workspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    held_bytes: int,
    flush_s: float,
    from_disk: bool,
) -> None:
    monkeypatch.setattr(predlog, "_HELD_BYTES", held_bytes)
    log = PredictionLog(workspace.db, tmp_path / "spool" / "production.jsonl", flush_s=flush_s)
    read_back: list[Path] = []
    real_read = journal.read

    def reading(path: Path) -> Any:
        read_back.append(path)
        return real_read(path)

    monkeypatch.setattr(journal, "read", reading)
    log.start()
    rows = [_row(i) for i in range(6)]
    for row in rows:
        log.add(row).result(10)
        assert log._held_bytes <= held_bytes  # memory stays bounded, segment growing or not
    if flush_s < 1:
        assert log.flush(30)
    log.stop()  # drains what is left
    # from memory when it fits; read back from the journal otherwise (the third case: one
    # segment of six rows, which passed the bound after the first few)
    assert bool(read_back) == from_disk
    with workspace.db.session() as s:
        stored = {r.id: r for r in s.scalars(select(PredictionRow))}
    assert set(stored) == {r["id"] for r in rows}
    for row in rows:
        got = stored[row["id"]]
        assert (got.label, got.confidence, got.source) == (
            row["label"],
            row["confidence"],
            row["source"],
        )
        assert got.probabilities == row["probabilities"] and got.quality == row["quality"]
        assert got.embedding == row["embedding"] and got.latency_ms == row["latency_ms"]
        assert got.at.replace(tzinfo=None) == row["at"].replace(tzinfo=None)
