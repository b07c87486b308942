"""An object-store outage during serving loses nothing: the service keeps answering while S3
(behind a TCP relay the test cuts and restores) is gone; each prediction and its kept input
image wait in the write-ahead journal, and once S3 is back every input is uploaded before its
row is written, so the log never holds a row whose input is missing, and nothing twice."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select

from kennel.db.schema import PredictionRow
from kennel.serve.server import start_in_thread
from kennel.storage import digest_key
from kennel.wiring import Workspace
from tests.conftest import s3_keys
from tests.helpers import jpeg
from tests.netfaults import Proxy
from tests.serving import served_project, wait_until


def _rows(pg_url: str) -> tuple[dict[str, str | None], int]:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as db:
            rows = dict(db.execute(select(PredictionRow.id, PredictionRow.input_sha256)).all())
            count = db.scalar(select(func.count()).select_from(PredictionRow)) or 0
    finally:
        engine.dispose()
    return {str(k): v for k, v in rows.items()}, count


def test_object_store_outage_loses_no_prediction_and_no_input(
    tmp_path: Path, pg_url: str, s3_endpoint: str, s3_bucket: str
) -> None:
    host, port = s3_endpoint.removeprefix("http://").split(":")
    proxy = Proxy((host, int(port)))
    project = served_project(
        tmp_path,
        metadata_url=pg_url,
        artifacts_url=f"s3+http://127.0.0.1:{proxy.port}/{s3_bucket}/p",
        models=1,
        serve={"log_flush_s": 0.1, "keep_inputs": True},
    )
    ws = Workspace(project)
    ws.registry.set_alias("pets", "production", 1, actor="test", reason="start")
    service = ws.service("production")
    log = service.predlog
    assert log is not None and log.inputs is not None
    running = start_in_thread(service)
    sent: dict[str, str] = {}  # prediction id -> sha256 of the image it was asked about

    def inputs_in_bucket() -> set[str]:  # read past the relay, straight from the server
        return set(s3_keys(s3_bucket, "p/sha256", endpoint=s3_endpoint))

    try:
        with httpx.Client(base_url=running.url, timeout=30) as client:

            def burst(seeds: range) -> None:
                for seed in seeds:
                    image = jpeg(seed=seed)
                    r = client.post(
                        "/v1/predict", content=image, headers={"content-type": "image/jpeg"}
                    )
                    assert r.status_code == 200, r.text
                    sent[r.json()["prediction_id"]] = hashlib.sha256(image).hexdigest()

            burst(range(20))
            wait_until(lambda: log.stats.written >= 20)
            proxy.cut()  # S3 disappears mid-traffic
            burst(range(20, 60))
            wait_until(lambda: log.stats.store_errors > 0 and log.spooled_lines() >= 40)
            assert client.get("/health/ready").status_code == 200  # still serving
            rows, _ = _rows(pg_url)  # meanwhile no row is logged without its input
            assert {f"p/{digest_key(d)}" for d in rows.values() if d} <= inputs_in_bucket()
            assert len(rows) < 60
            proxy.restore()
            burst(range(60, 80))
            assert log.flush(timeout=60)
    finally:
        running.stop()
        ws.close()
        proxy.close()
    rows, count = _rows(pg_url)
    assert len(sent) == 80 and rows == sent and count == 80  # every prediction, once
    kept = inputs_in_bucket()
    assert {f"p/{digest_key(d)}" for d in sent.values()} <= kept  # every kept input
    assert log.stats.replayed > 0 and log.stats.db_errors == 0 and log.spooled_lines() == 0
