"""Telemetry as stored: samples of host and device metrics, one row each.

A batch is stored without the samples that cannot be: those that are malformed (a value that
is not a finite number, a name empty or too long for its column) and those the database
refuses (found by bisecting the batch). They are named in a ``RowsRefusedError`` once the
others are stored, so one bad reading never costs the rest of its batch.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from numbers import Real

from sqlalchemy import ColumnElement, Executable, bindparam, func, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from kennel.db import Database, aware
from kennel.db.schema import TelemetryRow
from kennel.db.timeseries import Buckets, bucketed
from kennel.errors import MetadataError, RowsRefusedError

MAX_SOURCE = 128  # TelemetryRow.source
MAX_METRIC = 64  # TelemetryRow.metric


@dataclass(frozen=True)
class Sample:
    at: datetime
    source: str  # host name or device id
    metric: str
    value: float


@dataclass(frozen=True)
class SeriesPoint:
    """One metric of one source over one time bucket: its mean, lowest and highest reading."""

    start: datetime
    source: str
    metric: str
    mean: float
    low: float
    high: float
    n: int


def problem(sample: Sample) -> str | None:
    """Why ``sample`` cannot be stored, or None when it can."""
    value = sample.value
    if isinstance(value, bool) or not isinstance(value, Real):
        return f"{_label(sample)}: the value {short(value)} is not a number"
    if not math.isfinite(value):
        return f"{_label(sample)}: the value {value!r} is not a finite number"
    if not isinstance(sample.at, datetime):
        return f"{_label(sample)}: the time {short(sample.at)} is not a datetime"
    try:
        aware(sample.at).astimezone(UTC)
    except OverflowError:
        return f"{_label(sample)}: the time {sample.at.isoformat()} is out of range in UTC"
    for what, name, most in (("source", sample.source, MAX_SOURCE),
                             ("metric", sample.metric, MAX_METRIC)):  # fmt: skip
        if not isinstance(name, str) or not name or len(name) > most or "\x00" in name:
            return f"{_label(sample)}: the {what} must be 1 to {most} characters without NUL"
        try:
            name.encode()
        except UnicodeEncodeError:  # a lone surrogate: no database takes it
            return f"{_label(sample)}: the {what} is not valid Unicode text"
    return None


def short(value: object, most: int = 80) -> str:
    """``repr(value)``, cut to ``most`` characters: a message may quote what a device sent."""
    text = repr(value)
    return text if len(text) <= most else text[: most - 3] + "..."


def _label(sample: Sample) -> str:
    return f"{short(sample.source)} {short(sample.metric)}"


def _finite() -> ColumnElement[bool]:
    """Rows written before malformed readings were refused, or by another writer, may hold NaN
    or an infinity: left out of every read (NULL, NaN and infinities all fail this test)."""
    return TelemetryRow.value.between(-sys.float_info.max, sys.float_info.max)


@cache
def _series(count: int) -> Executable:
    t = TelemetryRow
    return bucketed(
        t.at,
        count,
        lambda number: select(number, t.source, t.metric, func.avg(t.value), func.min(t.value),
                              func.max(t.value), func.count())
        .where(t.metric.in_(bindparam("names", expanding=True)), _finite())
        .group_by(t.source, t.metric),
    )  # fmt: skip


def _row(sample: Sample) -> dict[str, object]:
    return {"at": sample.at, "source": sample.source, "metric": sample.metric,
            "value": float(sample.value)}  # fmt: skip


def _refusal(exc: MetadataError) -> str | None:
    """The database's reason when ``exc`` is a row it refuses (not an outage), else None."""
    cause = exc.__cause__
    if isinstance(cause, DataError | IntegrityError):
        return " ".join(str(cause.orig).split("\n", 1)[0].split())
    if isinstance(cause, StatementError) and not isinstance(cause, DBAPIError):
        return f"{type(cause.orig).__name__}: {cause.orig}"  # a value its column cannot take
    return None


class TelemetryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, samples: Iterable[Sample]) -> int:
        """Store ``samples`` but those that cannot be, in one transaction; returns how many.
        When any is malformed or refused by the database, ``RowsRefusedError`` names each
        with its reason after the others are stored. ``MetadataError``: nothing was stored."""
        checked = [(s, problem(s)) for s in samples]
        refused = [(s, why) for s, why in checked if why is not None]
        good = [s for s, why in checked if why is None]
        try:
            self._insert(good)
        except MetadataError as exc:
            if _refusal(exc) is None:
                raise
            # the database refuses a row we could not foresee: find which, store the rest
            found = dict(self._refused(good))
            refused += [(good[i], why) for i, why in found.items()]
            good = [s for i, s in enumerate(good) if i not in found]
            self._insert(good)
        if refused:
            raise RowsRefusedError("telemetry readings", stored=len(good), refused=refused)
        return len(good)

    def _insert(self, samples: Sequence[Sample], *, keep: bool = True) -> None:
        if samples:
            with self.db.session() as s:
                s.execute(TelemetryRow.__table__.insert(), [_row(x) for x in samples])  # type: ignore[attr-defined]
                if not keep:
                    s.rollback()

    def _refused(self, samples: Sequence[Sample], offset: int = 0) -> list[tuple[int, str]]:
        """The positions of the samples the database refuses, each with its reason: halves
        are tried in transactions rolled back at once, so nothing is stored while looking
        (an outage on the way leaves the whole batch to be tried again)."""
        try:
            self._insert(samples, keep=False)
            return []
        except MetadataError as exc:
            why = _refusal(exc)
            if why is None:
                raise
            if len(samples) == 1:
                bad = samples[0]
                return [(offset, f"{_label(bad)} = {bad.value!r}: the database refuses it: {why}")]
        half = len(samples) // 2
        return [*self._refused(samples[:half], offset),
                *self._refused(samples[half:], offset + half)]  # fmt: skip

    def between(self, *, since: datetime, until: datetime) -> list[Sample]:
        """Every sample in [since, until), oldest first."""
        with self.db.session() as s:
            rows = s.execute(
                select(
                    TelemetryRow.at, TelemetryRow.source, TelemetryRow.metric, TelemetryRow.value
                )
                .where(TelemetryRow.at >= since, TelemetryRow.at < until)
                .where(_finite())
                .order_by(TelemetryRow.at)
            ).all()
        return [Sample(aware(r.at), r.source, r.metric, r.value) for r in rows]

    def series(
        self, *, since: datetime, until: datetime, buckets: int = 60, metrics: int = 12
    ) -> list[SeriesPoint]:
        """Readings of [since, until) per time bucket, source and metric, aggregated by the
        database; only the ``metrics`` metric names that come first alphabetically."""
        b = Buckets(since, until, buckets)
        t = TelemetryRow
        in_range = (t.at >= since, t.at < until, _finite())
        with self.db.session() as s:
            names = list(
                s.scalars(
                    select(t.metric).where(*in_range).distinct().order_by(t.metric).limit(metrics)
                )
            )
            if not names:
                return []
            query = _series(buckets)
            found = s.execute(query, {**b.bounds(), "names": names}).all()
            rows = sorted(found, key=lambda r: (r[2], r[1], int(r[0])))
        return [
            SeriesPoint(b.start(int(i)), source, metric, float(mean), float(low), float(high), n)
            for i, source, metric, mean, low, high, n in rows
        ]
