"""Hostile lakes through `kennel data ingest` (issue #11, rows 11, 12, 16 and 18): manifests
confined to declared roots, archive bombs refused before inflating, special files and odd names
counted instead of hanging or crashing, and source passwords never recorded."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import uuid
import zipfile
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db.schema import IngestRunRow
from kennel.ingest.sources import open_source
from kennel.storage import sha256_hex
from kennel.wiring import Workspace
from tests.conftest import make_project
from tests.helpers import jpeg, labelled_jpegs, write_tree

runner = CliRunner()
GIB = 1 << 30


def _ingest(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["data", "ingest", *args, "--json"])
    assert result.exit_code == 0, result.output
    report: dict[str, object] = json.loads(result.stdout)
    return report


def _artifact_bytes(root: Path) -> bytes:
    """Every byte the project's artifact store holds, concatenated."""
    store = root / ".kennel" / "artifacts"
    return b"".join(p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file())


# Row 11 ---------------------------------------------------------------------------------------


def test_manifest_rows_are_confined_to_allowed_roots(tmp_path: Path) -> None:
    lake = write_tree(tmp_path / "lake", labelled_jpegs(4))
    secret = jpeg(60, 50, seed=77)  # a valid image, outside the manifest's folder
    outside = write_tree(tmp_path / "outside", {"cat/secret.jpg": secret}) / "cat" / "secret.jpg"
    notes = b"TOP SECRET: not an image at all " * 8
    (lake / "cat" / "notes.jpg").write_bytes(notes)
    escaping = [str(outside), f"file://{outside}", "../outside/cat/secret.jpg"]
    rows = [*(f"{k},{k.split('/')[0]}" for k in labelled_jpegs(4)), "cat/notes.jpg,cat"]
    rows += [f"{uri},cat" for uri in escaping]
    (lake / "m.csv").write_text("uri,label\n" + "\n".join(rows) + "\n")

    confined = make_project(tmp_path / "confined")
    report = _ingest(str(lake / "m.csv"), "-d", "m", "-C", str(confined.root))
    assert report["added"] == 4
    reasons = dict(report["quarantine_sample"])  # type: ignore[call-overload]
    for uri in escaping:
        assert reasons[uri].startswith("outside allowed roots: row "), reasons[uri]
    assert reasons["../outside/cat/secret.jpg"].startswith("outside allowed roots: row 8 ")
    assert report["quarantined"] == {"outside allowed roots": 3, "not an image": 1}
    stored = _artifact_bytes(confined.root)
    assert secret not in stored  # never read, so never a dataset row nor a blob
    assert notes not in stored  # a quarantined non-image's bytes are never stored
    ws = Workspace(confined)
    try:
        assert not ws.content.exists(sha256_hex(notes))
        assert all("outside" not in r.uri for r in ws.catalog.rows(ws.catalog.resolve("m")))
    finally:
        ws.close()
    human = runner.invoke(
        app, ["data", "ingest", str(lake / "m.csv"), "-d", "m2", "-C", str(confined.root)]
    )
    assert human.exit_code == 0 and "outside allowed roots: row 6" in human.stdout

    allowing = make_project(tmp_path / "allowing", allowed_roots=["../outside"])
    allowed = _ingest(str(lake / "m.csv"), "-d", "m", "-C", str(allowing.root))
    assert allowed["added"] == 5  # the three rows name one file: added once
    assert set(allowed["quarantined"]) == {"not an image"}  # type: ignore[arg-type]
    assert secret in _artifact_bytes(allowing.root)


# Row 12 ---------------------------------------------------------------------------------------


class _Zeros:
    """A stream of ``size`` zero bytes, made as they are read."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int) -> bytes:
        n = min(n, self.left)
        self.left -= n
        return bytes(n)


def _bombs(folder: Path) -> tuple[Path, Path]:
    """A zip with four good images and a member of 1 GiB of zeros (a few MB compressed), and a
    tar.gz with the same images and 512 MiB of zeros (a tar stream is inflated to be listed,
    so less keeps the test fast); written in chunks, so making them costs no memory."""
    good = labelled_jpegs(4)
    zipped = folder / "bomb.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in good.items():
            archive.writestr(name, data)
        with archive.open("cat/bomb.jpg", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(GIB // len(chunk)):
                member.write(chunk)
    tarred = folder / "bomb.tar.gz"
    with tarfile.open(tarred, "w:gz", compresslevel=1) as archive:
        for name, data in good.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("dog/bomb.jpg")
        info.size = GIB // 2
        archive.addfile(info, _Zeros(info.size))  # type: ignore[arg-type]
    return zipped, tarred


# Runs the real CLI in a fresh process and reports how far each ingest raised its peak RSS: the
# first ingest loads every module, so the growth of the next ones is the ingest's own.
_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from typer.testing import CliRunner
    from kennel.cli.main import app

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    runner, out = CliRunner(), []
    for source in sys.argv[2:]:
        before = peak()
        dataset = "d%d" % len(out)
        args = ["data", "ingest", source, "-d", dataset, "-C", sys.argv[1], "--json"]
        result = runner.invoke(app, args)
        out.append({"code": result.exit_code, "output": result.stdout, "grew": peak() - before})
    print(json.dumps(out))
    """
)


def _result(output: str) -> str:
    """The command's JSON result from output that also holds ``{"event": ...}`` lines."""
    return "\n".join(line for line in output.splitlines() if not line.startswith('{"event"'))


def test_archive_bombs_are_refused_before_inflating(tmp_path: Path) -> None:
    zipped, tarred = _bombs(tmp_path)
    assert zipped.stat().st_size < 8 << 20 and tarred.stat().st_size < 8 << 20
    warmup = write_tree(tmp_path / "warmup", labelled_jpegs(2, seed=9))
    project = make_project(tmp_path / "p")
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(project.root), str(warmup), str(zipped), str(tarred)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    _warm, *runs = json.loads(done.stdout)
    for run, bomb, size in zip(
        runs, ("cat/bomb.jpg", "dog/bomb.jpg"), (GIB, GIB // 2), strict=True
    ):
        assert run["grew"] < 300 << 20, run["grew"]  # the old code inflated all of it
        assert run["code"] == 0, run["output"]
        report = json.loads(run["output"])
        assert report["added"] == 4
        [(uri, reason)] = report["quarantine_sample"]
        assert bomb in uri
        assert reason == f"file too large: {size} bytes declared, not inflated (limit 67108864)"


# Row 16 ---------------------------------------------------------------------------------------


def test_special_files_and_odd_names_are_counted_not_opened(tmp_path: Path) -> None:
    lake = write_tree(tmp_path / "lake", labelled_jpegs(4))
    os.mkfifo(lake / "cat" / "pipe.jpg")  # opening it for reading would block forever
    os.symlink("loop-b.jpg", lake / "dog" / "loop-a.jpg")
    os.symlink("loop-a.jpg", lake / "dog" / "loop-b.jpg")
    with open(os.fsencode(lake / "cat") + b"/caf\xe9.jpg", "wb") as handle:  # Latin-1 name
        handle.write(jpeg(seed=5))
    project = make_project(tmp_path / "p")
    root = str(project.root)
    done = subprocess.run(
        [sys.executable, "-m", "kennel.cli", "data", "ingest", str(lake), "-d", "lake", "-C", root],
        capture_output=True,
        text=True,
        timeout=120,  # the old code hung on the FIFO
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    out = " ".join(done.stdout.split())
    assert "added 4" in out and "skipped 4" in out, out
    assert "name not UTF-8 1, not a regular file 1, symlink loop 2" in out, out
    ws = Workspace(project)
    try:
        with ws.db.session() as s:
            [run] = s.scalars(select(IngestRunRow)).all()
            assert run.summary["skipped"] == {
                "name not UTF-8": 1,
                "not a regular file": 1,
                "symlink loop": 2,
            }
    finally:
        ws.close()


def test_archive_members_climbing_out_are_counted(tmp_path: Path) -> None:
    good = labelled_jpegs(4)
    evil = {"../cat/evil.jpg": jpeg(seed=1), "/cat/abs.jpg": jpeg(seed=2)}
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        for name, data in {**good, **evil}.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    with tarfile.open(tmp_path / "evil.tar", "w") as archive:
        for name, data in {**good, **evil, "dog/../../up.jpg": jpeg(seed=3)}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("dog/link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    root = str(make_project(tmp_path / "p").root)
    zipped = _ingest(str(tmp_path / "evil.zip"), "-d", "z", "-C", root)
    assert zipped["added"] == 4 and zipped["files"] == 4
    assert zipped["skipped"] == {"archive member outside the archive": 2}
    tarred = _ingest(str(tmp_path / "evil.tar"), "-d", "t", "-C", root)
    assert tarred["skipped"] == {"archive member outside the archive": 3, "not a regular file": 1}
    human = runner.invoke(
        app, ["data", "ingest", str(tmp_path / "evil.zip"), "-d", "z", "-C", root]
    )
    assert human.exit_code == 0
    assert "skipped, never opened: archive member outside the archive 2" in human.stdout


# Row 18 ---------------------------------------------------------------------------------------


def test_sql_source_password_is_never_recorded(tmp_path: Path, pg_url: str) -> None:
    files = labelled_jpegs(4)
    imgs = write_tree(tmp_path / "imgs", files)
    table = f"lake_{uuid.uuid4().hex[:8]}"
    engine = create_engine(pg_url)
    try:
        with engine.begin() as c:
            user = c.execute(text("SELECT current_user")).scalar_one()
            c.execute(text(f"CREATE TABLE {table} (uri TEXT, label TEXT)"))
            for rel in files:
                c.execute(
                    text(f"INSERT INTO {table} VALUES (:u, :l)"),
                    {"u": str(imgs / rel), "l": rel.split("/")[0]},
                )
    finally:
        engine.dispose()
    password = f"pw-{uuid.uuid4().hex}"  # PostgreSQL here trusts loopback: any password works
    url = make_url(pg_url).set(username=user, password=password)
    source = url.render_as_string(hide_password=False)
    assert password in source
    project = make_project(tmp_path / "p", allowed_roots=[str(imgs)])
    root = str(project.root)

    # the same password as a query parameter (libpq takes it there too) on a second ingest
    as_param = make_url(pg_url).set(username=user).update_query_dict({"password": password})
    in_query = as_param.render_as_string(hide_password=False)
    assert f"password={password}" in in_query

    outputs = []
    for spec, extra in ((source, ["--json"]), (source, []), (in_query, [])):
        done = runner.invoke(
            app, ["data", "ingest", spec, "--sql-table", table, "-d", "sql", "-C", root, *extra]
        )
        assert done.exit_code == 0, done.output
        outputs.append(done.output)  # progress events (stderr) included: they are checked too
    report = json.loads(_result(outputs[0]))
    assert report["added"] == 4 and "***" in report["source"]
    for command in (["data", "show", "sql"], ["audit", "log", "--json"], ["data", "list"]):
        shown = runner.invoke(app, [*command, "-C", root])
        assert shown.exit_code == 0, shown.output
        outputs.append(shown.output)
    failed = runner.invoke(
        app, ["data", "ingest", source, "--sql-table", "ghost_table", "-d", "x", "-C", root]
    )
    assert failed.exit_code != 0 and "***" in failed.output
    outputs.append(failed.output)
    for output in outputs:
        assert password not in output

    db = project.root / ".kennel" / "kennel.db"
    with sqlite3.connect(db) as connection:
        dump = "\n".join(connection.iterdump())  # every table's every value, as SQL text
    assert "ingest_runs" in dump and "***" in dump
    assert password not in dump
    assert password.encode() not in _artifact_bytes(project.root)


def test_sql_table_with_a_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    write_tree(tmp_path / "lake", labelled_jpegs(4))
    root = str(make_project(tmp_path / "p", workers=1).root)
    folder = str(tmp_path / "lake")
    result = runner.invoke(
        app, ["data", "ingest", folder, "--sql-table", "images", "-d", "pets", "-C", root]
    )
    assert result.exit_code == 6, result.output
    assert result.stderr.strip() == (
        f"error: --sql-table is for a SQL URL source, and {folder!r} is not one"
    )
    listed = runner.invoke(app, ["data", "list", "--json", "-C", root])
    assert json.loads(listed.stdout) == []  # nothing ingested


# A break-it review of `kennel ingest`: a manifest named by file:// URL, read-only SQL queries,
# and manifest rows the header does not fit ------------------------------------------------------


def test_a_manifest_named_by_a_file_url_is_confined_as_its_path(tmp_path: Path) -> None:
    """A file:// manifest's rows were confined as URL prefixes, which follow no symlink: a link
    in the manifest's folder read a file from anywhere on the machine."""
    lake = write_tree(tmp_path / "lake", labelled_jpegs(4))
    secret = jpeg(60, 50, seed=77)
    outside = write_tree(tmp_path / "outside", {"cat/secret.jpg": secret}) / "cat" / "secret.jpg"
    (lake / "cat" / "link.jpg").symlink_to(outside)  # inside by name, outside once resolved
    rows = [f"{k},{k.split('/')[0]}" for k in labelled_jpegs(4)]
    rows += ["cat/link.jpg,cat", "../outside/cat/secret.jpg,cat", f"file://{outside},cat"]
    (lake / "m.csv").write_text("uri,label\n" + "\n".join(rows) + "\n")
    root = make_project(tmp_path / "p").root

    by_path = _ingest(str(lake / "m.csv"), "-d", "by-path", "-C", str(root))
    by_url = _ingest(f"file://{lake / 'm.csv'}", "-d", "by-url", "-C", str(root))
    for report in (by_path, by_url):
        assert report["added"] == 4
        assert report["quarantined"] == {"outside allowed roots": 3}, report["quarantined"]
    assert by_url["source"] == by_path["source"] == f"manifest:{lake / 'm.csv'}"
    assert by_url["version"]["version"] == by_path["version"]["version"]  # type: ignore[index]
    assert secret not in _artifact_bytes(root)


def _image_table(tmp_path: Path) -> tuple[Path, list[dict[str, str]]]:
    """Four images in a folder, and a row (uri: the absolute path, label) for each."""
    files = labelled_jpegs(4)
    imgs = write_tree(tmp_path / "imgs", files)
    return imgs, [{"uri": str(imgs / rel), "label": rel.split("/")[0]} for rel in files]


def _refused(url: str, root: Path, *args: str) -> str:
    result = runner.invoke(app, ["data", "ingest", url, *args, "-d", "q", "-C", str(root)])
    assert result.exit_code == 6, (args, result.output, result.exception)
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: SQL source {make_url(url).render_as_string()}: "), line
    return line


def test_a_sql_query_on_sqlite_only_reads(tmp_path: Path) -> None:
    imgs, rows = _image_table(tmp_path)
    db = tmp_path / "lake.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE images (uri TEXT, label TEXT)")
        connection.executemany("INSERT INTO images VALUES (:uri, :label)", rows)
    connection.close()
    before = db.read_bytes()
    evil = tmp_path / "evil.db"
    root = make_project(tmp_path / "p", allowed_roots=[str(imgs)]).root
    url = f"sqlite:///{db}"
    for query in (
        "DROP TABLE images",  # ran, outside any transaction
        f"ATTACH DATABASE '{evil}' AS evil",  # made the file
        "DELETE FROM images RETURNING uri, label",
        "UPDATE images SET label = 'dog' RETURNING uri, label",
        "INSERT INTO images VALUES ('x.jpg', 'cat') RETURNING uri, label",
        "CREATE TABLE more (uri TEXT, label TEXT)",
        "PRAGMA query_only = OFF",
        "VACUUM",
        "SELECT uri, label FROM images; DROP TABLE images",
    ):
        line = _refused(url, root, "--sql-query", query)
        assert "[SQL:" not in line and "sqlalche.me" not in line, line  # the driver's words
    line = _refused(url, root, "--sql-query", "DROP TABLE images")
    assert line.endswith(": the query may only read (a SELECT); SQLite refused it "
                         "(DatabaseError: not authorized)")  # fmt: skip
    line = _refused(url, root, "--sql-query", "REINDEX")
    assert line.endswith("the query returns no rows; it must be a SELECT giving uri and label")
    assert db.read_bytes() == before
    assert not evil.exists()
    report = _ingest(
        url, "--sql-query", "SELECT uri, label FROM images", "-d", "q", "-C", str(root)
    )
    assert report["added"] == 4


def test_a_sql_query_never_creates_the_sqlite_file_a_uri_names(tmp_path: Path) -> None:
    """A URL giving a ``file:`` URI of its own (``?uri=true``) was opened as it said: its
    ``mode=ro`` dropped, or ``mode=rwc`` obeyed, a mistyped path became a new empty database."""
    root = make_project(tmp_path / "p").root
    typo = tmp_path / "typo.db"
    for url in (f"sqlite:///{typo}", f"sqlite:///file:{typo}?uri=true",
                f"sqlite:///file:{typo}?mode=ro&uri=true",
                f"sqlite:///file:{typo}?mode=rwc&uri=true"):  # fmt: skip
        line = _refused(url, root, "--sql-query", "SELECT 'a.jpg' AS uri, 'cat' AS label")
        assert line.endswith(": OperationalError: unable to open database file"), line
        assert not typo.exists(), url


def test_a_sql_query_on_postgresql_only_reads_and_streams(tmp_path: Path, pg_url: str) -> None:
    imgs, rows = _image_table(tmp_path)
    engine = create_engine(pg_url)
    try:
        with engine.begin() as c:
            c.execute(text("CREATE TABLE images (uri TEXT, label TEXT)"))
            c.execute(text("INSERT INTO images VALUES (:uri, :label)"), rows)
            c.execute(text("CREATE SEQUENCE counter"))
        root = make_project(tmp_path / "p", allowed_roots=[str(imgs)]).root
        for query in (
            # a sequence moves whatever becomes of the transaction: this one moved it for good
            "SELECT uri, label, nextval('counter') AS n FROM images",
            "SELECT uri, label, setval('counter', 99) AS n FROM images",
            "WITH gone AS (DELETE FROM images RETURNING uri, label) SELECT * FROM gone",
            "DELETE FROM images",
            "DROP TABLE images",
            "SELECT uri, label FROM images; DROP TABLE images",
            "COMMIT",
        ):
            _refused(pg_url, root, "--sql-query", query)
        with engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM images")).scalar_one() == 4
            assert c.execute(text("SELECT last_value, is_called FROM counter")).one() == (1, False)
    finally:
        engine.dispose()
    # the query's own columns tell how it ran: read-only, from a server-side cursor
    source = open_source(
        pg_url,
        sql_query="SELECT uri, label, current_setting('transaction_read_only') AS read_only, "
        "(SELECT count(*) FROM pg_cursors) AS cursors FROM images",
        allowed_roots=[str(imgs)],
    )
    entries = source.scan().entries
    assert len(entries) == 4
    assert {(e.attrs["read_only"], e.attrs["cursors"]) for e in entries} == {("on", "1")}
    query = "SELECT uri, label FROM images"
    report = _ingest(pg_url, "--sql-query", query, "-d", "q", "-C", str(root))
    assert report["added"] == 4


def test_a_sql_query_elsewhere_is_refused_and_a_table_still_reads(
    tmp_path: Path, mariadb_url: str
) -> None:
    imgs, rows = _image_table(tmp_path)
    table = f"lake_{uuid.uuid4().hex[:8]}"
    engine = create_engine(mariadb_url)
    try:
        with engine.begin() as c:
            c.execute(text(f"CREATE TABLE {table} (uri VARCHAR(500), label VARCHAR(50))"))
            c.execute(text(f"INSERT INTO {table} VALUES (:uri, :label)"), rows)
        root = make_project(tmp_path / "p", allowed_roots=[str(imgs)]).root
        for query in (f"SELECT uri, label FROM {table}", f"DELETE FROM {table}"):
            line = _refused(mariadb_url, root, "--sql-query", query)
            assert "--sql-query runs only on SQLite and PostgreSQL" in line, line
            assert "name a table with --sql-table" in line, line
        with engine.connect() as c:
            assert c.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 4
        report = _ingest(mariadb_url, "--sql-table", table, "-d", "m", "-C", str(root))
        assert report["added"] == 4
    finally:
        with engine.begin() as c:
            c.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_a_manifest_row_with_more_fields_than_its_header_is_quarantined(tmp_path: Path) -> None:
    files = labelled_jpegs(4)
    extra = {"dog/extra.jpg": jpeg(seed=11), "cat/x,y.jpg": jpeg(seed=12)}
    lake = write_tree(tmp_path / "lake", {**files, **extra, "cat/a,b.jpg": jpeg(seed=13)})
    rows = [f"{rel},{rel.split('/')[0]}" for rel in files]
    rows += [
        "dog/extra.jpg,dog,night",  # row 5: a third field the header does not name
        "cat/x,y.jpg,cat",  # row 6: a comma in a name, unquoted, shifts every field after it
        '"cat/a,b.jpg",cat',  # quoted, as CSV says: an ordinary row
    ]
    (lake / "m.csv").write_text("uri,label\n" + "\n".join(rows) + "\n")
    root = make_project(tmp_path / "p").root
    report = _ingest(str(lake / "m.csv"), "-d", "m", "-C", str(root))
    assert report["added"] == 5
    assert report["quarantined"] == {"malformed row": 2}
    assert dict(report["quarantine_sample"]) == {  # type: ignore[call-overload]
        "dog/extra.jpg": "malformed row: row 5 has 3 fields, the header 2",
        "cat/x": "malformed row: row 6 has 3 fields, the header 2",
    }
    stored = _artifact_bytes(root)
    assert all(data not in stored for data in extra.values())  # quarantined unread


def test_a_manifest_that_is_not_valid_csv_is_one_line(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("uri,label\n" + "a" * 200_000 + ".jpg,cat\n")  # over csv's field limit
    root = make_project(tmp_path / "p").root
    result = runner.invoke(app, ["data", "ingest", str(manifest), "-d", "m", "-C", str(root)])
    assert result.exit_code == 6, (result.output, result.exception)  # was csv's traceback
    assert result.stderr == (
        f"error: manifest {manifest} is not valid CSV: field larger than field limit (131072)\n"
    )
