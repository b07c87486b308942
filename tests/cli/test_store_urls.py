"""Databases kennel cannot use are one line naming the problem and a non-zero exit, never a
traceback (issue #12): a URL that is not one, a database kennel does not support, a missing
driver, and a schema a newer kennel has upgraded past this one's migrations."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from kennel.cli.main import app
from tests.conftest import make_project

runner = CliRunner()
SUPPORTED = "use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"


def fails(*args: str, code: int) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_a_schema_newer_than_this_kennel(tmp_path: Path, metadata_url: str) -> None:
    root = str(
        make_project(tmp_path / "p", sections={"store": {"metadata_url": metadata_url}}).root
    )
    assert runner.invoke(app, ["data", "list", "-C", root]).exit_code == 0  # migrated to head
    engine = create_engine(metadata_url)
    try:
        with engine.begin() as connection:
            head = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            connection.execute(text("UPDATE alembic_version SET version_num = '0042_future'"))
        line = fails("data", "list", "-C", root, "--json", code=10)
        with engine.connect() as connection:  # left as it was
            now = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
    assert line.startswith("error: the metadata database at ")
    assert line.endswith(
        f"is at schema revision 0042_future, newer than this kennel (head {head}): upgrade kennel"
    )
    assert now == "0042_future"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("notaurl", "'notaurl' is not a database URL"),
        (
            "mysql://kennel:s3cret@db.example/kennel",
            "'mysql://kennel:***@db.example/kennel': mysql databases are not supported",
        ),
        ("oracle+nope://kennel:s3cret@db/x", "'oracle+nope://kennel:***@db/x': oracle databases"),
        (
            "postgresql+psycopg2://kennel:s3cret@127.0.0.1/x",
            "'postgresql+psycopg2://kennel:***@127.0.0.1/x' needs a driver that is not installed",
        ),
        ("sqlite://", "'sqlite://' is an in-memory database"),
        ("sqlite:///:memory:", "'sqlite:///:memory:' is an in-memory database"),
    ],
)
def test_an_unusable_metadata_url_in_kennel_yaml(tmp_path: Path, url: str, problem: str) -> None:
    root = str(make_project(tmp_path / "p", sections={"store": {"metadata_url": url}}).root)
    line = fails("data", "list", "-C", root, code=2)
    assert line.startswith(f"error: store.metadata_url: {problem}")
    assert line.endswith(SUPPORTED) and "s3cret" not in line


def test_an_unusable_batch_score_database(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    for url, problem in (
        ("notaurl", "'notaurl' is not a database URL"),
        ("mysql://u:s3cret@h/db", "'mysql://u:***@h/db': mysql databases are not supported"),
    ):
        line = fails(
            "batch-score", "--input", str(tmp_path), "--table", "scores", "--model", "pets@1",
            "--db", url, "-C", root, code=2,
        )  # fmt: skip
        assert line == f"error: --db: {problem}; {SUPPORTED}"


def test_a_mistyped_sqlite_path_makes_no_folders(tmp_path: Path) -> None:
    """`sqlite:////nonexistent/dir/x.db` made /nonexistent/dir and an empty database there,
    and `kennel data list` printed an empty table with exit 0."""
    wrong = tmp_path / "typo" / "dir" / "x.db"
    root = str(make_project(tmp_path / "p", sections={"store": {
        "metadata_url": f"sqlite:///{wrong}"}}).root)  # fmt: skip
    line = fails("data", "list", "-C", root, code=10)
    assert f"{tmp_path / 'typo'} does not exist" in line and "mistyped" in line
    assert not (tmp_path / "typo").exists()


def test_an_artifact_store_url_of_an_unknown_scheme_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    """A mistyped scheme is the configuration's fault (exit 2), not an unreachable store
    (it exited 7, "cannot open the artifact store"); a password in it stays hidden."""
    url = "s3+ftp://kennel:s3cret@h/b"
    root = str(make_project(tmp_path / "p", sections={"store": {"artifacts_url": url}}).root)
    line = fails("data", "list", "-C", root, code=2)
    assert line.startswith("error: artifact store s3+ftp://kennel:***@h/b: unknown scheme 's3+ftp'")


def test_a_monitor_environment_nothing_defines_or_logged_is_refused(tmp_path: Path) -> None:
    """A typo in monitor.environment analysed nothing and exited 0, each cycle; a wrong --env
    was already refused."""
    root = make_project(tmp_path / "p", sections={"monitor": {"environment": "prodution"}}).root
    for command in (["monitor", "run"], ["analyze", "errors"]):
        line = fails(*command, "-C", str(root), code=2)
        assert "'prodution'" in line and "monitor.environment in kennel.yaml" in line, line
    assert (
        runner.invoke(app, ["monitor", "run", "--env", "production", "-C", str(root)]).exit_code
        == 0
    )
