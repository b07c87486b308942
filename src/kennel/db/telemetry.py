"""Telemetry as stored: samples of host and device metrics, one row each."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import Executable, bindparam, func, select

from kennel.db import Database, aware
from kennel.db.schema import TelemetryRow
from kennel.db.timeseries import Buckets, bucketed


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


@cache
def _series(count: int) -> Executable:
    t = TelemetryRow
    return bucketed(
        t.at,
        count,
        lambda number: select(number, t.source, t.metric, func.avg(t.value), func.min(t.value),
                              func.max(t.value), func.count())
        .where(t.metric.in_(bindparam("names", expanding=True)))
        .group_by(t.source, t.metric),
    )  # fmt: skip


class TelemetryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, samples: Iterable[Sample]) -> int:
        """Store ``samples`` in one transaction; returns how many."""
        rows = [
            {"at": s.at, "source": s.source, "metric": s.metric, "value": s.value} for s in samples
        ]
        if rows:
            with self.db.session() as s:
                s.execute(TelemetryRow.__table__.insert(), rows)  # type: ignore[attr-defined]
        return len(rows)

    def between(self, *, since: datetime, until: datetime) -> list[Sample]:
        """Every sample in [since, until), oldest first."""
        with self.db.session() as s:
            rows = s.execute(
                select(
                    TelemetryRow.at, TelemetryRow.source, TelemetryRow.metric, TelemetryRow.value
                )
                .where(TelemetryRow.at >= since, TelemetryRow.at < until)
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
        in_range = (t.at >= since, t.at < until)
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
