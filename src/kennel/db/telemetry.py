"""Telemetry as stored: samples of host and device metrics, one row each."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from kennel.db import Database, aware
from kennel.db.schema import TelemetryRow


@dataclass(frozen=True)
class Sample:
    at: datetime
    source: str  # host name or device id
    metric: str
    value: float


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
