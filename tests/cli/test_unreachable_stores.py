"""Bad input: kennel.yaml names a metadata database or an S3 endpoint that does not answer.
The real CLI, in its own process, says so in one line naming it (host:port, never a password),
within a bounded time, and writes nothing anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import S3_ENV, make_project
from tests.helpers import labelled_jpegs, write_tree
from tests.serving import free_port

BOUND_S = 30  # the stores' retry budgets plus a Python start, with room for a busy machine


def _ingest(root: Path, lake: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, **S3_ENV, "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("AWS_ENDPOINT_URL", None)
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "kennel.cli", "data", "ingest", str(lake), "-d", "pets"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, time.monotonic() - began


def _files(root: Path) -> list[Path]:
    return sorted(p for p in (root / ".kennel").rglob("*") if p.is_file())


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "lake", labelled_jpegs(6, seed=1))


def test_an_unreachable_metadata_database(tmp_path: Path, lake: Path) -> None:
    port = free_port()
    url = f"postgresql+psycopg://kennel:s3cret-pw@127.0.0.1:{port}/test"
    root = make_project(tmp_path / "p", sections={"store": {"metadata_url": url}}).root
    result, took = _ingest(root, lake)
    assert result.returncode != 0 and took < BOUND_S
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot reach the metadata database at ")
    assert f"127.0.0.1:{port}/test" in lines[0]
    assert "s3cret" not in result.stderr + result.stdout
    assert _files(root) == []  # no image stored, no state written


def test_an_unreachable_s3_endpoint(tmp_path: Path, lake: Path) -> None:
    port = free_port()
    artifacts = f"s3+http://127.0.0.1:{port}/kennel-artifacts/park"
    root = make_project(tmp_path / "p", sections={"store": {"artifacts_url": artifacts}}).root
    result, took = _ingest(root, lake)
    assert result.returncode != 0 and took < BOUND_S
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: the artifact store ") and "unreachable" in lines[0]
    assert f"127.0.0.1:{port}" in lines[0]
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in result.stderr + result.stdout
    assert _files(root) == []  # not even the SQLite file: nothing is opened before the check


@pytest.mark.postgres
def test_batch_reads_unreachable_or_refusing_database_is_one_line(tmp_path: Path) -> None:
    """--db names the database as host:port/name like the metadata store; a server that
    answers but refuses (no such database, no such role) is not retried and says so; a port
    out of range is a settings error."""
    from typer.testing import CliRunner

    from kennel.cli.main import app

    root = str(make_project(tmp_path / "p").root)
    port = free_port()
    cases = [
        (
            f"postgresql+psycopg://k:s3cret@127.0.0.1:{port}/x",
            10,
            f"cannot reach the database at 127.0.0.1:{port}/x (tried 4 times)",
        ),
        (
            "postgresql+psycopg://postgres:s3cret@127.0.0.1:5432/nosuch",
            10,
            'the database at 127.0.0.1:5432/nosuch refuses the connection: database "nosuch" '
            "does not exist",
        ),
        (
            "postgresql+psycopg://nosuchrole:s3cret@127.0.0.1:5432/test",
            10,
            'refuses the connection: role "nosuchrole" does not exist',
        ),
        ("postgresql+psycopg://k:s3cret@127.0.0.1:99999/x", 2, "port 99999 is not 1-65535"),
        ("postgresql+psycopg://k:s3cret@127.0.0.1:abc/x", 2, "is not a database URL"),
    ]
    for db, code, message in cases:
        began = time.monotonic()
        result = CliRunner().invoke(
            app, ["batch-read", "x", "--db", db, "--table", "t", "-C", root]
        )
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == code and len(lines) == 1, result.output
        assert message in lines[0] and "s3cret" not in lines[0], lines[0]
        if code != 10 or "refuses" in message:
            assert time.monotonic() - began < 2  # not retried
