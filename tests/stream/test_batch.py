"""Pattern 4: offline predictions in a shared table (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import Result
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import Project
from kennel.errors import ConfigError
from kennel.wiring import Workspace
from tests.conftest import make_project
from tests.helpers import write_tree
from tests.serving import served_project

runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return served_project(tmp_path_factory.mktemp("batch"), models=1)


def test_batch_scores_idempotently_and_matches_the_predictor(
    project: Project, metadata_url: str, tmp_path: Path
) -> None:
    root = str(project.root)
    args = [
        "batch-score",
        "--input",
        "dataset:park",
        "--table",
        "pet_predictions",
        "--model",
        "pets@1",
        "--db",
        metadata_url,
        "-C",
        root,
        "--json",
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["inputs"] == 120 and report["inserted"] == 120 and report["errors"] == 0
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["inserted"] == 0 and again["already_scored"] == 120  # idempotent re-run

    ws = Workspace(project)
    try:
        row = ws.catalog.rows(ws.catalog.resolve("park"))[0]
        expected = ws.predictor("pets@1").predict_one(ws.content.get(row.sha256))
    finally:
        ws.close()
    read = runner.invoke(
        app, ["batch-read", row.uri, "--table", "pet_predictions", "--db", metadata_url, "-C", root]
    )
    assert read.exit_code == 0, read.output
    [stored] = json.loads(read.stdout)
    assert stored["label"] == expected.label and stored["version"] == 1
    assert stored["probabilities"] == pytest.approx(expected.probabilities, abs=1e-9)
    assert stored["pet"] == expected.pet and expected.pet is not None  # the judgement is stored
    assert stored["pet_score"] == pytest.approx(expected.pet_score, abs=1e-9)

    write_tree(tmp_path / "inbox", {"a.jpg": b"not an image"})
    mixed = runner.invoke(
        app,
        [
            "batch-score",
            "--input",
            str(tmp_path / "inbox"),
            "--table",
            "pet_predictions",
            "--env",
            "production",
            "--db",
            metadata_url,
            "-C",
            root,
            "--json",
        ],
    )
    assert mixed.exit_code == 3  # production has no model yet: a clear not-found
    bad_table = runner.invoke(app, [*args[:3], "--table", "x; drop", *args[5:]])
    assert bad_table.exit_code == 2 and "invalid table name" in bad_table.stderr


def test_a_table_made_before_the_pet_judgement_gets_its_columns(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import create_engine, text

    from kennel.db.scores import Score, ScoreTable

    url = f"sqlite:///{tmp_path / 'apps.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:  # the table as earlier kennel versions created it
        connection.execute(
            text(
                "CREATE TABLE scores (uri TEXT, input_sha256 VARCHAR(64), model VARCHAR(128),"
                " version INTEGER, label VARCHAR(128), confidence FLOAT, probabilities TEXT,"
                " error TEXT, scored_at DATETIME NOT NULL,"
                " PRIMARY KEY (uri, input_sha256, model, version))"
            )
        )
        connection.execute(
            text("INSERT INTO scores VALUES ('old.jpg', 'a', 'pets', 1, 'cat', 0.9, NULL, NULL,"
                 " '2026-01-01 00:00:00')")
        )  # fmt: skip
    engine.dispose()
    now = datetime.now(UTC)
    with ScoreTable(url, "scores") as table:
        table.create()
        table.create()  # twice: nothing left to add
        new = Score("new.jpg", "b", "pets", 2, "dog", 0.8, {"dog": 0.8}, None, now, False, 0.1)
        assert table.add_new([new]) == 1
        [old] = table.for_uri("old.jpg")
        [stored] = table.for_uri("new.jpg")
    assert old.pet is None and old.label == "cat"
    assert stored.pet is False and stored.pet_score == pytest.approx(0.1)


def _one_line(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_kennels_own_tables_and_other_tables_are_refused(tmp_path: Path, metadata_url: str) -> None:
    """The shared database is often the metadata one: scoring into ``datasets`` once added
    two columns to it and then failed with a 30 KB SQL error."""
    from sqlalchemy import create_engine, inspect, text

    from kennel.db.schema import Base
    from kennel.db.scores import ScoreTable, kennel_tables

    root = str(
        make_project(tmp_path / "p", sections={"store": {"metadata_url": metadata_url}}).root
    )
    assert runner.invoke(app, ["data", "list", "-C", root]).exit_code == 0  # schema created
    assert set(Base.metadata.tables) | {"alembic_version"} == kennel_tables()
    engine = create_engine(metadata_url)

    def columns() -> dict[str, list[str]]:
        found = inspect(engine)
        return {t: [c["name"] for c in found.get_columns(t)] for t in ("datasets", "items")}

    before = columns()
    for name in ("datasets", "predictions", "alembic_version", "Items"):
        line = _one_line(
            runner.invoke(app, ["batch-score", "--input", str(tmp_path), "--table", name,
                                "--model", "pets@1", "-C", root]),
            2,
        )  # fmt: skip
        assert line == (
            f"error: table {name!r} is one of kennel's own tables; choose another name for "
            "predictions"
        )
        read = runner.invoke(app, ["batch-read", "x.jpg", "--table", name, "-C", root])
        assert _one_line(read, 2) == line
        with pytest.raises(ConfigError):
            ScoreTable(metadata_url, name)  # the library refuses it too, before any DDL
    assert columns() == before and "pet" not in before["datasets"]  # nothing altered

    with engine.begin() as connection:  # an application's own table in the shared database
        connection.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)"))
    with ScoreTable(metadata_url, "users") as table, pytest.raises(ConfigError) as refused:
        table.create()
    assert "table 'users'" in str(refused.value) and "not a predictions table" in str(refused.value)
    assert [c["name"] for c in inspect(engine).get_columns("users")] == ["id", "name"]
    # the columns of a predictions table without its key: re-runs would store every score
    # again (each run "8 new"), and it was given kennel's pet columns
    with engine.begin() as connection:
        connection.execute(text(
            "CREATE TABLE nokey (uri TEXT, input_sha256 VARCHAR(64), model VARCHAR(128), "
            "version INTEGER, label VARCHAR(128), confidence FLOAT, probabilities TEXT, "
            "error TEXT, scored_at TIMESTAMP NOT NULL)"
        ))  # fmt: skip
    with ScoreTable(metadata_url, "nokey") as table, pytest.raises(ConfigError) as refused:
        table.create()
    assert "without (uri, input_sha256, model, version) as its primary key" in str(refused.value)
    assert "pet" not in [c["name"] for c in inspect(engine).get_columns("nokey")]
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE nokey"))
    engine.dispose()

    missing = runner.invoke(app, ["batch-read", "x.jpg", "--table", "nosuch", "-C", root])
    assert _one_line(missing, 3).startswith("error: no table nosuch at ")


def test_a_source_or_version_that_is_not_there_writes_no_table(
    project: Project, tmp_path: Path
) -> None:
    """The inputs are found before the shared table is made: a failed batch leaves nothing
    behind (an empty table was created before the source was even looked at)."""
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    for spec, code in ((str(tmp_path / "nonexistent"), 6), ("dataset:../x@1", 2),
                       ("dataset:park@v99", 3)):  # fmt: skip
        args = ["batch-score", "--input", spec, "--table", "out", "--model", "pets@1"]
        failed = runner.invoke(app, [*args, "--db", db, "-C", str(project.root)])
        assert failed.exit_code == code, failed.output
        assert failed.stderr.count("\n") == 1 and failed.stderr.startswith("error: ")
    from sqlalchemy import create_engine, inspect

    engine = create_engine(db)
    try:
        assert "out" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_a_scored_file_is_read_back_by_its_relative_path(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder's files are stored by absolute path; the reader finds one named relatively
    from where it is run, as a person types it."""
    ws = Workspace(project)
    try:
        row = ws.catalog.rows(ws.catalog.resolve("park"))[0]
        write_tree(tmp_path / "inbox", {"cam/one é.jpg": ws.content.get(row.sha256)})
    finally:
        ws.close()
    root = str(project.root)
    scored = runner.invoke(app, ["batch-score", "--input", str(tmp_path / "inbox"), "--table",
                                 "rel", "--model", "pets@1", "-C", root, "--json"])  # fmt: skip
    assert scored.exit_code == 0 and json.loads(scored.stdout)["inserted"] == 1, scored.output
    monkeypatch.chdir(tmp_path / "inbox")
    absolute = str(tmp_path / "inbox" / "cam" / "one é.jpg")
    urls = (f"file://{quote(absolute)}", f"FILE://localhost{quote(absolute)}")
    for name in ("cam/one é.jpg", "./cam/one é.jpg", absolute, f"file://{absolute}", *urls):
        read = runner.invoke(app, ["batch-read", name, "--table", "rel", "-C", root])
        assert read.exit_code == 0 and len(json.loads(read.stdout)) == 1, (name, read.output)
    other = runner.invoke(app, ["batch-read", "cam/two.jpg", "--table", "rel", "-C", root])
    assert other.exit_code == 0 and json.loads(other.stdout) == []


def _score(project: Project, spec: str, table: str, db: str, *more: str) -> Result:
    return runner.invoke(app, ["batch-score", "--input", spec, "--table", table, "--model",
                               "pets@1", "--db", db, "-C", str(project.root), *more])  # fmt: skip


def test_a_batch_that_scores_nothing_fails_and_names_why(project: Project, tmp_path: Path) -> None:
    """An empty folder, or a manifest whose every row is refused or unreadable, exited 0 as
    "0 inputs scored" (the second stored its rows' reasons): a scheduled job passed."""
    from sqlalchemy import create_engine, inspect

    db = f"sqlite:///{tmp_path / 'shared.db'}"
    (tmp_path / "empty").mkdir()
    line = _one_line(_score(project, str(tmp_path / "empty"), "none", db), 6)
    assert line == f"error: no valid images in folder:{tmp_path / 'empty'} layout=auto (nothing " \
        "found: no image files)"  # fmt: skip
    manifest = write_tree(tmp_path / "in", {"m.csv": b"uri,label\n/etc/passwd,cat\n"
                                            b"../../etc/hostname,dog\n"}) / "m.csv"  # fmt: skip
    for _ in range(2):  # a re-run too: its rows are stored already, and still none is a score
        line = _one_line(_score(project, str(manifest), "refused", db), 6)
        assert line.startswith(
            "error: no input could be scored: 2 unreadable (the first: "
            "outside allowed roots: row 2 points at '../../etc/hostname'"
        )
        assert line.endswith("); the reasons are stored in table refused")  # fmt: skip
    engine = create_engine(db)
    try:
        assert inspect(engine).get_table_names() == ["refused"]  # none for the empty folder
    finally:
        engine.dispose()


def test_an_unlabelled_manifest_is_scored_and_a_rescoring_succeeds(
    project: Project, tmp_path: Path
) -> None:
    """Batch scoring labels its inputs: a manifest with only a ``uri`` column was refused as
    needing a ``label`` one. Re-running over inputs scored before inserts nothing and succeeds,
    and so does a batch in which some inputs are unreadable."""
    ws = Workspace(project)
    try:
        image = ws.content.get(ws.catalog.rows(ws.catalog.resolve("park"))[0].sha256)
    finally:
        ws.close()
    inbox = write_tree(tmp_path / "inbox", {
        "a.jpg": image, "only-uri.csv": b"uri\na.jpg\n", "labelled.csv": b"uri,label\na.jpg,dog\n",
        "mixed.csv": b"uri\na.jpg\n../../etc/hostname\n", "no-uri.csv": b"path\na.jpg\n",
    })  # fmt: skip
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    # (manifest, rows inserted, already there, unreadable): a.jpg is stored once, by its path
    for name, *counts in (("only-uri.csv", 1, 0, 0), ("only-uri.csv", 0, 1, 0),
                          ("labelled.csv", 0, 1, 0), ("mixed.csv", 1, 1, 1)):  # fmt: skip
        scored = _score(project, str(inbox / name), "scores", db, "--json")
        assert scored.exit_code == 0, (name, scored.output)
        report = json.loads(scored.stdout)
        assert [report[k] for k in ("inserted", "already_scored", "errors")] == counts, name
    line = _one_line(_score(project, str(inbox / "no-uri.csv"), "scores", db), 6)
    assert line == f"error: manifest:{inbox / 'no-uri.csv'}: needs column 'uri', has ['path']"
    read = runner.invoke(app, ["batch-read", str(inbox / "a.jpg"), "--table", "scores", "--db", db,
                               "-C", str(project.root)])  # fmt: skip
    [stored] = json.loads(read.stdout)
    assert stored["label"] in ("cat", "dog") and stored["error"] is None


def test_batch_read_never_creates_the_database_it_reads(project: Project, tmp_path: Path) -> None:
    """A mistyped SQLite path made a new empty database file, then said "no table"."""
    typo = tmp_path / "typo db.sqlite"
    urls = (f"sqlite:///{typo}", f"sqlite:///file:{quote(str(typo))}?mode=rwc&uri=true")
    for url in urls:
        read = runner.invoke(app, ["batch-read", "x.jpg", "--table", "t", "--db", url,
                                   "-C", str(project.root)])  # fmt: skip
        assert _one_line(read, 3) == f"error: no SQLite database at {typo}", url
        assert not typo.exists()
