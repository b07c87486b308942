"""Every stored time comes back UTC-aware, on SQLite (which keeps times as text without an
offset) and on PostgreSQL in any session time zone (issue #12)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import select

from kennel.db import Database
from kennel.db.audit import AuditLog
from kennel.db.datasets import DatasetStore
from kennel.db.schema import TelemetryRow


def test_times_are_utc_aware_on_every_backend(metadata_url: str) -> None:
    if metadata_url.startswith("postgresql"):  # the server would answer in +05:30
        metadata_url = metadata_url.replace("options=", "options=-ctimezone%3DAsia/Kolkata%20")
    db = Database.open(metadata_url)
    try:
        store = DatasetStore(db)
        store.ensure_dataset("park")
        version = store.add_version(
            "park", "a" * 64, parent_id=None, manifest_sha256="b" * 64, ingest_run_id=None,
            n_rows=0, counts={}, summary={}, actor="test",
        )  # fmt: skip
        india = timezone(timedelta(hours=5, minutes=30))
        written = datetime(2026, 11, 29, 22, 30, tzinfo=india)  # 17:00 UTC
        with db.session() as s:
            s.add(TelemetryRow(at=written, source="h", metric="m", value=1.0))
            s.add(TelemetryRow(at=datetime(2026, 11, 29, 18), source="h", metric="n", value=1.0))
        with db.session() as s:
            read = {r.metric: r.at for r in s.scalars(select(TelemetryRow))}
            # a bound parameter is converted the same way: 22:30+05:30 finds the 17:00 reading
            found = s.scalars(select(TelemetryRow.metric).where(TelemetryRow.at == written)).all()
        times = [
            version.created_at,
            store.versions("park")[0].created_at,
            *(e.at for e in AuditLog(db).entries()),
            *read.values(),
        ]
    finally:
        db.dispose()
    assert all(t.utcoffset() == timedelta(0) for t in times), times
    assert read["m"] == datetime(2026, 11, 29, 17, tzinfo=UTC)
    assert read["n"] == datetime(2026, 11, 29, 18, tzinfo=UTC)  # naive in: taken as UTC
    assert found == ["m"]
