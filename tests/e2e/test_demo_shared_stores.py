"""The demo's whole story on shared stores: PostgreSQL for metadata (a schema of its own) and
an S3-protocol server for artifacts (a bucket of its own, named by an s3+http:// URL): ingest,
build, register, deploy with certification, serve, monitor, retrain, audit verify."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, func, select

from kennel.config import GatesConfig, StoreConfig
from kennel.db.schema import AuditRow, ItemRow, ModelVersionRow, PredictionRow
from kennel.demo import run_demo
from kennel.progress import Event
from kennel.storage import digest_key
from tests.conftest import s3_keys
from tests.test_demo import assert_the_story


def test_the_demo_story_on_postgresql_and_s3(
    tmp_path: Path, pg_url: str, s3_endpoint: str, s3_bucket: str
) -> None:
    artifacts = f"s3+http://{s3_endpoint.removeprefix('http://')}/{s3_bucket}/park"
    said: list[Event] = []
    summary = run_demo(
        tmp_path / "demo",
        count=120,
        epochs=1,
        traffic=40,
        gates=GatesConfig(beat_majority=False),
        store=StoreConfig(metadata_url=pg_url, artifacts_url=artifacts),
        progress=said.append,
    )
    assert_the_story(summary, said)

    # the rows are in PostgreSQL...
    engine = create_engine(pg_url)
    try:
        with engine.connect() as db:
            items = set(db.scalars(select(ItemRow.sha256)))
            inputs = set(db.scalars(select(PredictionRow.input_sha256)))
            predictions = db.scalar(select(func.count()).select_from(PredictionRow))
            models = db.scalar(select(func.count()).select_from(ModelVersionRow))
            audited = db.scalar(select(func.count()).select_from(AuditRow))
    finally:
        engine.dispose()
    served = sum(p["images"] for p in summary["phases"])
    assert len(items) >= 100 and models in (1, 2) and audited and audited > 5
    assert predictions is not None and predictions >= served  # certification predicts too
    # ...the artifacts (images, bundles, kept inputs, audit anchors) in the bucket...
    keys = set(s3_keys(s3_bucket, "park", endpoint=s3_endpoint))
    assert {f"park/{digest_key(d)}" for d in items} <= keys
    assert None not in inputs and {f"park/{digest_key(d)}" for d in inputs if d} <= keys
    assert any(k.startswith("park/audit") for k in keys), sorted(keys)[:5]
    # ...and none of it on the local disk
    local = Path(summary["project"]) / ".kennel"
    assert not (local / "artifacts").exists()
    assert not list(local.glob("*.db")) and not list((tmp_path / "demo").rglob("sha256"))
