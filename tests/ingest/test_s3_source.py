"""Ingest from an S3 bucket on a real S3-protocol server (moto's, on loopback): by ``s3://``
with the endpoint from the AWS environment, or by ``s3+http://host:port/bucket/prefix`` as the
artifact store takes it; a bucket that is missing or misnamed is one line naming it, and a
listing that fails leaves nothing behind."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
import s3fs
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.ingest.sources import read_uri
from kennel.wiring import Workspace
from tests.conftest import S3_ENV, make_project
from tests.helpers import labelled_jpegs

runner = CliRunner()


@pytest.fixture
def lake(s3_bucket: str) -> dict[str, bytes]:
    fs = s3fs.S3FileSystem(
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        skip_instance_cache=True,
        key=S3_ENV["AWS_ACCESS_KEY_ID"],
        secret=S3_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    files = labelled_jpegs(6)
    for rel, data in files.items():
        fs.pipe_file(f"{s3_bucket}/lake/{rel}", data)
    return files


def _ingest(root: Path, source: str, dataset: str) -> dict[str, object]:
    result = runner.invoke(
        app, ["data", "ingest", source, "-d", dataset, "-C", str(root), "--json"]
    )
    assert result.exit_code == 0, result.output
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_s3_and_s3_http_urls_ingest_the_same_files(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str, lake: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    root = make_project(tmp_path / "p", workers=1).root
    assert _ingest(root, f"s3://{s3_bucket}/lake", "by-env")["added"] == 6
    named = f"s3+http://{s3_endpoint.removeprefix('http://')}/{s3_bucket}/lake"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the URL's endpoint wins
    report = _ingest(root, named, "by-url")
    assert report["added"] == 6 and report["quarantined"] == {}
    ws = Workspace.load(root)
    try:
        uris = {row.uri for row in ws.catalog.rows(ws.catalog.resolve("by-url"))}
    finally:
        ws.close()
    # lineage records the URL as given, and kennel reads it again from there
    assert uris == {f"{named}/{rel}" for rel in lake}
    assert read_uri(f"{named}/cat/img0_0000.jpg") == lake["cat/img0_0000.jpg"]


@pytest.mark.parametrize(
    ("bucket", "problem"),
    [("{bucket}-gone", "no bucket '{bucket}-gone'"),
     ("Bad_Bucket!", "'Bad_Bucket!' is not a valid bucket name")],
)  # fmt: skip
def test_a_bad_bucket_is_one_line_and_leaves_nothing(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str, bucket: str, problem: str
) -> None:
    root = make_project(tmp_path / "p", workers=1).root
    bucket, problem = bucket.format(bucket=s3_bucket), problem.format(bucket=s3_bucket)
    host = s3_endpoint.removeprefix("http://")
    assert runner.invoke(app, ["data", "list", "-C", str(root)]).exit_code == 0  # the schema
    for source in (f"s3://{bucket}/lake", f"s3+http://{host}/{bucket}/lake"):
        result = runner.invoke(app, ["data", "ingest", source, "-d", "pets", "-C", str(root)])
        assert result.exit_code == 6, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert problem in lines[0] and "Traceback" not in result.output
    with sqlite3.connect(root / ".kennel" / "kennel.db") as db:
        assert db.execute("SELECT count(*) FROM datasets").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM ingest_runs").fetchone() == (0,)
