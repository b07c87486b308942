"""The ingest-runs aggregate: one run per ingest of a source into a dataset, and what happened to
each of its files (entities in, entities out).

A run's records are its checkpoint: ``save`` writes a chunk's records together with the items
they accepted in one transaction, so a resumed run skips exactly the files already recorded.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, Text, any_, bindparam, func, select, update

from kennel.db.bulk import fetch_tuples, insert_ignore_tuples, upsert_tuples
from kennel.db.datasets import Item
from kennel.db.disputes import LabelDisputeStore
from kennel.db.ingest_runs import IngestRunStore
from kennel.db.schema import (
    FileStateRow,
    IngestRecordRow,
    ItemRow,
)

STATE_PAGE = 50_000  # uris per query when looking up file states
_STATE_COLUMNS = ("uri", "stat", "sha256", "width", "height")
# an accepted file's columns (``IngestStore.accepted``): its record's, then its item's
ACCEPTED = ("uri", "sha256", "label", "attrs", "width", "height", "brightness", "contrast",
            "sharpness", "phash")  # fmt: skip


class FileStates(NamedTuple):
    """Recorded file states as columns, one value per file in each."""

    uri: list[str]
    stat: list[str]
    sha256: list[str]
    width: list[int]
    height: list[int]


@dataclass(frozen=True)
class IngestRecord:
    """What happened to one source file in one run: accepted (with its sha256) or quarantined."""

    run_id: str
    uri: str
    seq: int
    label: str | None
    status: str
    sha256: str | None
    reason: str | None
    attrs: dict[str, str]


_ITEM_FIELDS = tuple(f.name for f in fields(Item))
_RECORD_FIELDS = tuple(f.name for f in fields(IngestRecord))
_item_values = attrgetter(*_ITEM_FIELDS)
_record_values = attrgetter(*_RECORD_FIELDS)


def _record(row: IngestRecordRow) -> IngestRecord:
    return IngestRecord(
        run_id=row.run_id,
        uri=row.uri,
        seq=row.seq,
        label=row.label,
        status=row.status,
        sha256=row.sha256,
        reason=row.reason,
        attrs=row.attrs,
    )


def _item(row: ItemRow) -> Item:
    return Item(
        sha256=row.sha256,
        size=row.size,
        format=row.format,
        mode=row.mode,
        width=row.width,
        height=row.height,
        brightness=row.brightness,
        contrast=row.contrast,
        sharpness=row.sharpness,
        phash=row.phash,
    )


class IngestStore(IngestRunStore, LabelDisputeStore):
    """Ingest runs (``kennel.db.ingest_runs``), their per-file records, the items they
    accepted and the label disputes they found (``kennel.db.disputes``); one session per
    call."""

    def item(self, sha256: str) -> Item | None:
        """The ingested image with this content, if any ingest accepted it."""
        with self.db.session() as s:
            row = s.get(ItemRow, sha256)
            return _item(row) if row else None

    def known(self, sha256s: Collection[str]) -> set[str]:
        """Which of ``sha256s`` are ingested images (at most a page's worth at a time)."""
        if not sha256s:
            return set()
        query = select(ItemRow.sha256).where(ItemRow.sha256.in_(list(sha256s)))
        with self.db.session() as s:
            return set(s.scalars(query))

    def records(
        self, run_id: str, status: str, *, limit: int, offset: int = 0
    ) -> list[IngestRecord]:
        """The run's records with ``status`` (e.g. its quarantined files), in file order:
        ``limit`` of them after skipping ``offset``."""
        query = (
            select(IngestRecordRow)
            .where(IngestRecordRow.run_id == run_id, IngestRecordRow.status == status)
            .order_by(IngestRecordRow.seq)
            .limit(limit)
            .offset(offset)
        )
        with self.db.session() as s:
            return [_record(r) for r in s.scalars(query)]

    def count(self, run_id: str, status: str) -> int:
        """How many of the run's records have ``status``."""
        query = select(func.count()).where(
            IngestRecordRow.run_id == run_id, IngestRecordRow.status == status
        )
        with self.db.session() as s:
            return int(s.scalar(query) or 0)

    def recorded_uris(self, run_id: str) -> set[str]:
        """The files this run has recorded already (accepted or quarantined)."""
        with self.db.session() as s:
            return set(
                s.scalars(select(IngestRecordRow.uri).where(IngestRecordRow.run_id == run_id))
            )

    def file_states(self, uris: Sequence[str]) -> FileStates:
        """For each of ``uris`` with a recorded state that knows its item's size: its stat
        when its sha256 was read, that sha256, and the item's width and height
        (``kennel.ingest.filestate``), as columns: the caller compares them as arrays."""
        found = FileStates([], [], [], [], [])
        row = FileStateRow
        columns: list[Any] = [row.uri, row.stat, row.sha256, row.width, row.height]
        with self.db.session() as s:
            sqlite = s.get_bind().dialect.name == "sqlite"
            for start in range(0, len(uris), STATE_PAGE):
                page = list(uris[start : start + STATE_PAGE])
                # the page as one value, not a bound parameter per uri (SQLAlchemy spent
                # longer on 100,000 of those than the database on the lookup): a JSON array
                # that SQLite unpacks, a text array for PostgreSQL
                wanted = (
                    row.uri.in_(select(func.json_each(json.dumps(page)).table_valued("value")))
                    if sqlite
                    else row.uri == any_(bindparam("uris", page, type_=ARRAY(Text)))
                )
                query = select(*columns).where(wanted, row.width.is_not(None))
                # the driver's tuples (text and integers), turned into columns in one step:
                # SQLAlchemy rows cost a third more, a dictionary of tuples as much again
                rows = fetch_tuples(s, query)
                columns_of: tuple[list[Any], ...] = found
                for column, values in zip(columns_of, zip(*rows, strict=True), strict=False):
                    column.extend(values)  # (no rows: nothing to add)
        return found

    def save(
        self,
        items: Sequence[Item],
        records: Sequence[IngestRecord],
        states: Sequence[tuple[str, str, str, int, int]] = (),
    ) -> None:
        """One checkpoint: new items and the records of a chunk, in one transaction; items and
        records stored already are left as they are. ``states``: (uri, stat, sha256, width,
        height) of local files read for this chunk, each replacing the uri's earlier state."""
        # plain tuples (attrgetter), not asdict(): its deep copy was a tenth of a large
        # ingest's time, and SQLAlchemy's parameter sets per row a fifth of the driver's
        with self.db.session() as s:
            insert_ignore_tuples(
                s,
                ItemRow.__table__,  # type: ignore[arg-type]
                _ITEM_FIELDS,
                [_item_values(i) for i in items],
            )
            insert_ignore_tuples(
                s,
                IngestRecordRow.__table__,  # type: ignore[arg-type]
                _RECORD_FIELDS,
                [_record_values(r) for r in records],
            )
            upsert_tuples(s, FileStateRow.__table__, _STATE_COLUMNS, states)  # type: ignore[arg-type]

    def accepted(self, run_id: str, status: str) -> dict[str, list[Any]]:
        """The run's records with ``status`` (its accepted files) by file order, each with
        what its item measured, as columns (``ACCEPTED``; attrs as dicts). Columns, not
        record and item objects: building 100,000 of each took a second of an ingest's end."""
        r, i = IngestRecordRow, ItemRow
        query = (
            select(
                r.uri,
                r.sha256,
                r.label,
                r.attrs,
                i.width,
                i.height,
                i.brightness,
                i.contrast,
                i.sharpness,
                i.phash,
            )
            .join(i, i.sha256 == r.sha256)
            .where(r.run_id == run_id, r.status == status)
            .order_by(r.seq)
        )
        with self.db.session() as s:
            dialect = s.get_bind().dialect
            if dialect.name != "sqlite":
                rows: Sequence[Sequence[Any]] = s.execute(query).all()
                columns = [list(c) for c in zip(*rows, strict=True)]
            else:  # the driver's tuples, only the attrs (JSON text) parsed on the way out
                rows = fetch_tuples(s, query)
                columns = [list(c) for c in zip(*rows, strict=True)]
                if columns:
                    loads = r.attrs.type._cached_result_processor(dialect, None)
                    assert loads is not None
                    columns[3] = [{} if t == "{}" else loads(t) for t in columns[3]]
        if not columns:
            return {name: [] for name in ACCEPTED}
        return dict(zip(ACCEPTED, columns, strict=True))

    def digests(self, run_id: str, status: str) -> list[tuple[str, str]]:
        """(uri, sha256) of the run's records with ``status``; "" for bytes never hashed (a
        file refused for its size, its label or its place before it was read)."""
        r = IngestRecordRow
        query = select(r.uri, r.sha256).where(r.run_id == run_id, r.status == status)
        with self.db.session() as s:
            return [(uri, sha or "") for uri, sha in s.execute(query).all()]

    def mark(
        self,
        run_id: str,
        reasons: Sequence[tuple[str, str]],
        status: str,
        *,
        undo: tuple[Sequence[str], str] = ((), ""),
    ) -> list[IngestRecord]:
        """Give each (uri, reason) of the run ``status`` (e.g. quarantined), then return every
        record of the run with that status by file order, in one transaction. ``undo``: the
        uris an earlier call marked, given back the status named (and no reason) first: a
        version built again on a newer head may take what it refused on the older one."""
        uris, back = undo
        with self.db.session() as s:
            if uris:
                s.execute(
                    update(IngestRecordRow)
                    .where(IngestRecordRow.run_id == run_id, IngestRecordRow.uri.in_(list(uris)))
                    .values(status=back, reason=None)
                )
            for uri, reason in reasons:
                s.execute(
                    update(IngestRecordRow)
                    .where(IngestRecordRow.run_id == run_id, IngestRecordRow.uri == uri)
                    .values(status=status, reason=reason)
                )
            rows = s.scalars(
                select(IngestRecordRow)
                .where(IngestRecordRow.run_id == run_id, IngestRecordRow.status == status)
                .order_by(IngestRecordRow.seq)
            )
            return [_record(r) for r in rows]
