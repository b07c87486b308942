"""Ingest = extract, transform, load: read a source, check every file on an engine (this
process, a process pool or a Ray cluster: ``kennel.ingest.engines``), store the bytes
content-addressed, then commit a dataset version from here, the driver, whatever the engine.

Progress is checkpointed in ``ingest_records`` (every two seconds at most, each checkpoint one
transaction holding the records of whole chunks whose bytes are stored durably already); an
interrupted run (even ``kill -9``) resumes where it stopped when the same source is ingested
into the same dataset again: version ids are content digests, so its result is the same.
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from kennel.config import DataConfig
from kennel.datasets.extension import Extension, extend, offered
from kennel.datasets.manifest import SCHEMA
from kennel.datasets.versioning import DatasetCatalog, DatasetVersion, contents_unique
from kennel.db import Database
from kennel.db.datasets import Item
from kennel.db.ingest import IngestRecord, IngestStore
from kennel.errors import HeadMovedError, MetadataError, StateError
from kennel.ingest import filestate
from kennel.ingest.disputes import known, offers
from kennel.ingest.engines import Engine, LocalEngine, Target, source_chunks
from kennel.ingest.nothing import all_quarantined, nothing_found
from kennel.ingest.sources import Entry, FolderSource, Listing, Source
from kennel.ingest.validate import OK, QUARANTINED, FileResult, Limits
from kennel.progress import Event, Progress, silent
from kennel.storage import ContentStore

# Files per task. A local engine's workers only write the bytes they keep; the driver makes
# them durable with one filesystem sync before each checkpoint (an engine whose workers may be
# other machines syncs at the end of each task instead).
CHUNK = 128
# A checkpoint (one transaction, one fsync of the metadata DB) is written when this many
# files or seconds have passed since the last (the first after 0.25 s, each wait doubling up
# to CHECKPOINT_S): a commit per chunk cost 20-40 ms each, a third of a large ingest. A kill
# loses at most this much work, which a resume does again.
CHECKPOINT_FILES = 2048
CHECKPOINT_S = 2.0
FIRST_CHECKPOINT_S = 0.25
REPARENT_ATTEMPTS = 20  # commits lost to other ingests of the same dataset before giving up


@dataclass(frozen=True)
class IngestReport:
    run_id: str
    dataset: str
    source: str
    version: DatasetVersion
    created: bool  # False: identical content already existed as this version
    resumed: bool
    files: int
    processed: int  # files checked by this invocation (the rest were done before a resume)
    reused: int  # files not read: unchanged since an earlier ingest read them (filestate)
    added: int
    already_present: int
    replaced: int  # rewritten in place: the parent's rows for their uris left out
    withdrawn: int  # the parent's files quarantined this time: their rows left out too
    quarantined: dict[str, int]
    quarantine_sample: list[tuple[str, str]]
    ignored: int
    skipped: dict[str, int]  # never opened: special files, symlink loops, unsafe names
    exact_duplicate_groups: int
    near_duplicate_pairs: int
    near_duplicates_across_splits: int  # of them, pairs in two different splits
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = self.version.as_dict()
        data["images_per_second"] = round(self.images_per_second, 1)
        return data


# what a report gives of its version's summary as it is
_COUNTED = ("added", "already_present", "replaced", "withdrawn", "quarantined")
_PAIRS = ("exact_duplicate_groups", "near_duplicate_pairs", "near_duplicates_across_splits")


def reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


def _fingerprint(dataset: str, source: Source, entries: list[Entry], rules: str) -> str:
    """What an interrupted run is resumed by: the same files of the same source into the same
    dataset, judged by the same ``rules`` (a file checked before the interruption is not
    checked again: under other labels, limits or allowed roots its verdict would not be this
    run's)."""
    digest = hashlib.sha256(f"{dataset}\n{source.describe()}\n{rules}\n".encode())
    for entry in entries:
        digest.update(f"{entry.uri}\t{entry.label}\n".encode())
    return digest.hexdigest()


@contextmanager
def _cycles_collected_after() -> Iterator[None]:
    """Python's cycle collector paused for the block: an ingest makes a few objects per file
    (entries, stat keys, results), none of them in a cycle, and each collection walked all of
    them again, about 0.5 s of a 100,000-file append. What cycles the block leaves are
    collected after it, as usual."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


class Ingestor:
    """Runs ingests against one metadata DB and content store; the per-file work runs on
    ``engine`` (default: this machine with ``workers`` processes), everything else here."""

    def __init__(
        self,
        db: Database,
        content: ContentStore,
        artifacts_url: str,
        data: DataConfig,
        *,
        workers: int = 1,
        engine: Engine | None = None,
        chunk: int = CHUNK,
    ) -> None:
        self.db = db
        self.content = content
        self.artifacts_url = artifacts_url
        self.data = data
        self.engine = engine or LocalEngine(workers)
        self.chunk = max(1, chunk)
        self.catalog = DatasetCatalog(db, content)
        self.store = IngestStore(db)
        self.limits = Limits(
            labels=tuple(data.labels),
            min_side=data.min_side,
            max_pixels=data.max_pixels,
            max_file_bytes=data.max_file_bytes,
        )
        # what every file's verdict depends on besides its bytes (a manifest row outside the
        # allowed roots is refused unread)
        self.rules = json.dumps(
            {**asdict(self.limits), "allowed_roots": sorted(data.allowed_roots)}, sort_keys=True
        )

    def run(
        self,
        source: Source,
        dataset: str,
        *,
        actor: str = "kennel",
        progress: Progress = silent,
    ) -> IngestReport:
        with _cycles_collected_after():
            return self._run(source, dataset, actor, progress)

    def _run(self, source: Source, dataset: str, actor: str, progress: Progress) -> IngestReport:
        with ExitStack() as claims:  # the run's claim, held until it is finished
            return self._ingest(source, dataset, actor, progress, claims)

    def _ingest(
        self, source: Source, dataset: str, actor: str, progress: Progress, claims: ExitStack
    ) -> IngestReport:
        started = time.perf_counter()
        target = Target(self.content, self.artifacts_url, self.limits)
        # reach the engine first: a cluster that cannot be reached leaves no run behind
        with self.engine.connected(target):
            listing = source.scan()  # a listing that fails leaves no dataset row behind
            if not listing.entries:  # nor does one of nothing, whatever the dataset holds
                raise nothing_found(source, listing)
            self.catalog.ensure_dataset(dataset)
            entries = listing.entries
            fingerprint = _fingerprint(dataset, source, entries, self.rules)
            if not claims.enter_context(self.store.claim(fingerprint)):
                live = self.store.running(fingerprint)
                raise StateError(
                    f"an ingest of the same files into {dataset!r} is running now"
                    + (f" (run {live.id})" if live else "")
                    + "; wait for it to finish"
                )
            run_id, parent_id, resumed = self._start(dataset, fingerprint, source, entries, actor)
            done = self.store.recorded_uris(run_id)
            pending = [(seq, e) for seq, e in enumerate(entries) if e.uri not in done]
            # a folder's files unchanged since an earlier read are not read again
            reused: list[FileResult] = []
            held = 0  # of them, those the parent holds already: not even recorded
            keys: dict[str, str] = {}  # stat keys of local files, taken before any read
            if isinstance(source, FolderSource):
                scope = filestate.scope_of(self.content)
                unchanged, to_read, keys = filestate.reuse(
                    self.store, pending, self.limits, scope=scope
                )
                self.engine.expect(len(to_read))  # a pool starts while the rest is sorted out
                if unchanged.num_rows and parent_id is not None:
                    parent = self.catalog.resolve(f"{dataset}@{parent_id}")
                    unchanged, held = filestate.held(self.catalog.index(parent), unchanged)
                unchanged, to_read = filestate.stored(self.content, unchanged, to_read, pending)
                reused = filestate.results(unchanged, pending)
                pending = to_read
            progress(Event("ingest", done=len(done) + len(reused) + held, total=len(entries)))
            processed = 0
            local = self.engine.reads_local_files
            chunks = source_chunks(source, pending, self.chunk, local_files=local)
            unsaved: list[FileResult] = list(reused)
            saved_at, wait = time.monotonic(), FIRST_CHECKPOINT_S
            for results in self.engine.map(target, chunks, len(pending)):
                unsaved += results
                processed += len(results)
                if len(unsaved) >= CHECKPOINT_FILES or time.monotonic() - saved_at >= wait:
                    self._save(run_id, unsaved, keys)
                    unsaved, saved_at = [], time.monotonic()
                    wait = min(CHECKPOINT_S, 2 * wait)
                done_now = len(done) + len(reused) + held + processed
                progress(Event("ingest", done=done_now, total=len(entries)))
            self._save(run_id, unsaved, keys)
        version, created, summary = self._finish(
            dataset, run_id, parent_id, source, actor, listing, held
        )
        return IngestReport(
            run_id=run_id,
            dataset=dataset,
            source=source.describe(),
            version=version,
            created=created,
            resumed=resumed,
            files=len(entries),
            processed=processed,
            reused=len(reused) + held,
            **{key: summary[key] for key in (*_COUNTED, *_PAIRS)},
            quarantine_sample=[(u, r) for u, r in summary["quarantine_sample"]],
            ignored=listing.ignored,
            skipped=listing.skipped,
            seconds=time.perf_counter() - started,
        )

    def _start(
        self, dataset: str, fingerprint: str, source: Source, entries: list[Entry], actor: str
    ) -> tuple[str, str | None, bool]:
        running = self.store.running(fingerprint)
        if running is not None:
            return running.id, running.parent_version, True
        parent = self.catalog.latest(dataset)
        run = self.store.start(
            uuid.uuid4().hex,
            dataset=dataset,
            source=source.describe(),
            fingerprint=fingerprint,
            parent_version=parent.id if parent else None,
            files=len(entries),
            actor=actor,
        )
        return run.id, run.parent_version, False

    def _save(self, run_id: str, results: list[FileResult], keys: dict[str, str]) -> None:
        """Checkpoint ``results``; with the sha256 of each local file read and accepted,
        recorded under its stat key from ``keys`` (``kennel.ingest.filestate``)."""
        if not results:
            return
        if not self.engine.stores_durably:
            self.content.sync()  # the bytes of these files first, then their records
        items = {
            r.sha256: Item(sha256=r.sha256, size=r.size, **r.item)
            for r in results
            if r.status == OK and r.item is not None and r.sha256 is not None
        }
        states = sorted(  # by uri: concurrent ingests of one folder lock rows in one order
            (r.uri, keys[r.uri], r.sha256, int(r.item["width"]), int(r.item["height"]))
            for r in results
            if r.item is not None and r.sha256 is not None and r.uri in keys
        )
        self.store.save(
            list(items.values()),
            [
                IngestRecord(
                    run_id=run_id,
                    uri=r.uri,
                    seq=r.seq,
                    label=r.label,
                    status=r.status,
                    sha256=r.sha256,
                    reason=r.reason,
                    attrs=r.attrs,
                )
                for r in results
            ],
            states,
        )

    def _finish(
        self,
        dataset: str,
        run_id: str,
        parent_id: str | None,
        source: Source,
        actor: str,
        listing: Listing,
        held: int,
    ) -> tuple[DatasetVersion, bool, dict[str, Any]]:
        candidates = offered(self.store.accepted(run_id, OK))
        marked: list[str] = []  # the files an attempt refused as conflicts (the next redoes it)
        # Another ingest into the dataset may commit while this one runs: then this version is
        # built again on the newest one (a child of it, holding what both brought), not beside it.
        for _attempt in range(REPARENT_ATTEMPTS):
            parent = self.catalog.resolve(f"{dataset}@{parent_id}") if parent_id else None
            ext, summary = self._extend(
                run_id, dataset, parent, candidates, source, listing, held, actor, marked
            )
            found = offers(ext, source)
            try:
                version, created = self.catalog.commit(
                    dataset,
                    ext.table,
                    parent=parent,
                    ingest_run_id=run_id,
                    summary=summary,
                    actor=actor,
                    added=None if ext.replaced else ext.new_rows,  # else rows went too
                    disputes=found,  # with the version: an ingest building on it reads them
                )
            except HeadMovedError as moved:
                parent_id = moved.head
                continue
            except StateError:  # the content of an older version: this run is over
                self.store.dispute(dataset, found, run_id, actor=actor)
                self.store.close(run_id, "failed", None, summary)
                raise
            if not created:  # no version written: the disputes on their own
                self.store.dispute(dataset, found, run_id, actor=actor)
            self.store.close(run_id, "done", version.id, summary)
            self.store.supersede(dataset, source.describe(), by=run_id)  # interrupted runs
            return version, created, summary
        why = f"other ingests kept adding versions ({REPARENT_ATTEMPTS} tries); ingest again"
        raise MetadataError(f"could not commit a version of {dataset!r}: {why} to resume")

    def _extend(
        self,
        run_id: str,
        dataset: str,
        parent: DatasetVersion | None,
        candidates: pa.Table,
        source: Source,
        listing: Listing,
        held: int,
        actor: str,
        marked: list[str],
    ) -> tuple[Extension, dict[str, Any]]:
        """The child of ``parent`` with the run's new files and its summary; conflicting files
        are quarantined, and a run whose files are all quarantined fails (SourceError), the
        label disputes it found recorded all the same. ``held``: files not recorded because the
        parent holds them unchanged; ``marked``, the files an earlier attempt refused, is
        replaced by this one's."""
        disputed, settled = known(self.store, dataset, source)
        ext = extend(
            self.catalog.table(parent) if parent else SCHEMA.empty_table(),
            candidates,
            split=self.data.split,
            near_distance=self.data.near_duplicate_distance,
            parent_unique=parent is None or contents_unique(parent),
            refused=self.store.digests(run_id, QUARANTINED) if parent else (),
            earlier=parent.summary if parent else None,
            disputed=disputed,
            settled=settled,
        )
        undo = (list(marked), OK)
        marked[:] = [uri for uri, _reason in ext.conflicts]
        bad = [(r.uri, r.reason) for r in self.store.mark(run_id, ext.conflicts, QUARANTINED,
                                                          undo=undo)]  # fmt: skip
        quarantined = Counter(reason_kind(reason or "") for _uri, reason in bad)
        if ext.table.num_rows == 0:
            self.store.dispute(dataset, offers(ext, source), run_id, actor=actor)
            self.store.close(run_id, "failed", None, {"quarantined": dict(quarantined)})
            self.store.forget_first_failure(run_id)  # no empty dataset left behind
            raise all_quarantined(source, listing, len(bad), quarantined)
        summary: dict[str, Any] = {
            "source": source.describe(),
            "added": ext.added,
            "already_present": ext.already_present + held,
            "quarantined": dict(sorted(quarantined.items())),
            "quarantine_sample": [[u, r or ""] for u, r in bad[:50]],
            "skipped": listing.skipped,
            **ext.duplicates_summary(),
        }
        return ext, summary
