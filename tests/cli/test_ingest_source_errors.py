"""Bad input: a source that is empty, unreachable or refuses kennel, of every kind `kennel data
ingest` takes (a folder, an archive, a manifest by path or URL, S3, SQL, FTP, HTTP). Each is one
line on stderr and exit code 6 (a SourceError), never a traceback, another exit code or a
version: an empty source into a dataset that has versions fails as it does into a new one."""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import logging
import os
import subprocess
import sys
import tarfile
import threading
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import Result
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from kennel.cli.main import app
from tests.conftest import S3_ENV, make_project
from tests.helpers import labelled_jpegs, write_tree
from tests.serving import free_port

runner = CliRunner()


def _ingest(root: Path, source: str, dataset: str, *extra: str) -> Result:
    return runner.invoke(app, ["data", "ingest", source, "-d", dataset, "-C", str(root), *extra])


def _one_line(result: Result, *needles: str) -> str:
    """The single error line of a failed ingest, which must hold each of ``needles``."""
    assert result.exit_code == 6, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _versions(root: Path, dataset: str) -> list[str]:
    listed = runner.invoke(app, ["data", "list", dataset, "--json", "-C", str(root)])
    assert listed.exit_code == 0, listed.output
    return [v["ref"] for v in json.loads(listed.stdout)]


# -- an HTTP server on loopback: files from a folder, and a 500 for any path holding "boom" ----


class _Handler(http.server.SimpleHTTPRequestHandler):
    def send_head(self):  # type: ignore[no-untyped-def]
        if "boom" in self.path:
            self.send_error(500, "boom")
            return None
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the server runs in this process: its log would be the CLI's stderr


@dataclass
class Web:
    url: str  # http://127.0.0.1:PORT
    folder: Path  # what it serves


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_Handler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Web(f"http://127.0.0.1:{server.server_address[1]}", folder)
    finally:
        server.shutdown()
        server.server_close()


# -- an FTP server on loopback (pyftpdlib): user kennel, password PASSWORD, no anonymous login -


PASSWORD = "Zq7-not-for-disk"  # distinctive: a test looks for it in every file kennel writes


@dataclass
class Ftp:
    port: int
    home: Path

    def url(self, path: str = "", *, password: str = PASSWORD) -> str:
        return f"ftp://kennel:{password}@127.0.0.1:{self.port}/{path}"


@pytest.fixture
def ftp(tmp_path: Path) -> Iterator[Ftp]:
    with warnings.catch_warnings():  # on Python 3.11 it imports the deprecated asyncore
        warnings.simplefilter("ignore", DeprecationWarning)
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        from pyftpdlib.servers import FTPServer

    home = tmp_path / "ftp"
    home.mkdir()
    users = DummyAuthorizer()
    users.add_user("kennel", PASSWORD, str(home), perm="elr")
    # no 3 s pause after a failed login; the server's log off (it would be the CLI's stderr)
    handler = type("Handler", (FTPHandler,), {"authorizer": users, "auth_failed_timeout": 0})
    logging.getLogger("pyftpdlib").disabled = True
    server = FTPServer(("127.0.0.1", 0), handler)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        server.close_all()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield Ftp(server.address[1], home)
    finally:
        stop.set()
        thread.join(5)


# -- empty sources -----------------------------------------------------------------------------


def _empty_sources(tmp_path: Path, web: Web) -> dict[str, list[str]]:
    """An empty source of each local and web kind, as `kennel data ingest` arguments."""
    (tmp_path / "empty").mkdir()
    write_tree(tmp_path / "notes", {"cat/readme.txt": b"no image here"})
    zipfile.ZipFile(tmp_path / "empty.zip", "w").close()
    tarfile.open(tmp_path / "empty.tar.gz", "w:gz").close()
    (tmp_path / "empty.csv").write_text("uri,label\n")
    schema = pa.schema([("uri", pa.string()), ("label", pa.string())])
    pq.write_table(schema.empty_table(), tmp_path / "empty.parquet")
    (web.folder / "empty.csv").write_text("uri,label\n")
    db = tmp_path / "lake.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE images (uri TEXT, label TEXT)"))
    engine.dispose()
    return {
        "folder": [str(tmp_path / "empty")],
        "folder of no images": [str(tmp_path / "notes")],
        "zip": [str(tmp_path / "empty.zip")],
        "tar": [str(tmp_path / "empty.tar.gz")],
        "csv": [str(tmp_path / "empty.csv")],
        "parquet": [str(tmp_path / "empty.parquet")],
        "csv by file URL": [f"file://{tmp_path / 'empty.csv'}"],
        "csv by HTTP URL": [f"{web.url}/empty.csv"],
        "sqlite table": [f"sqlite:///{db}", "--sql-table", "images"],
        "sqlite query": [f"sqlite:///{db}", "--sql-query", "SELECT uri, label FROM images"],
    }


def test_an_empty_source_fails_into_a_new_dataset_and_into_one_with_versions(
    tmp_path: Path, web: Web
) -> None:
    lake = write_tree(tmp_path / "lake", labelled_jpegs(4))
    root = make_project(tmp_path / "p", workers=1).root
    assert _ingest(root, str(lake), "pets").exit_code == 0
    [version] = _versions(root, "pets")
    for kind, (source, *extra) in _empty_sources(tmp_path, web).items():
        for dataset in ("fresh", "pets"):  # "pets" was reported unchanged, exit 0
            line = _one_line(_ingest(root, source, dataset, *extra), "no valid images in ")
            assert "nothing found: no image files" in line, (kind, line)
    assert _versions(root, "pets") == [version]
    assert runner.invoke(app, ["data", "list", "fresh", "-C", str(root)]).exit_code == 3


def test_an_empty_s3_prefix_or_ftp_folder_fails_into_a_dataset_with_versions(
    tmp_path: Path, s3_bucket: str, ftp: Ftp
) -> None:
    lake = write_tree(tmp_path / "lake", labelled_jpegs(4))
    (ftp.home / "empty").mkdir()
    root = make_project(tmp_path / "p", workers=1).root
    assert _ingest(root, str(lake), "pets").exit_code == 0
    [version] = _versions(root, "pets")
    line = _one_line(_ingest(root, f"s3://{s3_bucket}/nothing-here", "pets"), "nothing found")
    assert "check it is not mistyped" in line  # an object store has no folders
    line = _one_line(_ingest(root, ftp.url("empty"), "pets"), "nothing found")
    assert "mistyped" not in line  # an FTP server has folders: this one exists, and is empty
    assert _versions(root, "pets") == [version]


# -- unreachable sources -----------------------------------------------------------------------


def test_an_unreachable_or_failing_web_source_is_one_line(tmp_path: Path, web: Web) -> None:
    root = make_project(tmp_path / "p", workers=1).root
    closed = f"http://127.0.0.1:{free_port()}"
    write_tree(web.folder / "lake", labelled_jpegs(2))
    cases = {
        f"{closed}/m.csv": "Cannot connect to host",
        f"{closed}/lake.zip": "Cannot connect to host",
        f"{closed}/lake.tar.gz": "Cannot connect to host",
        f"{closed}/lake": "Cannot connect to host",  # was "nothing found" on "an object store"
        f"{web.url}/boom.csv": "500",
        f"{web.url}/boom.zip": "500",
        f"{web.url}/missing.csv": "404",
        f"{web.url}/missing": "404",
    }
    for source, reason in cases.items():
        line = _one_line(_ingest(root, source, "web"), source, reason)
        assert "nothing found" not in line, line


def test_an_unreachable_s3_server_is_one_line_for_archives_and_manifests(tmp_path: Path) -> None:
    """botocore's errors are not OSErrors: an archive or a manifest on an S3 server that does
    not answer was a traceback. Run as the CLI in its own process, each with a fresh S3 client."""
    root = make_project(tmp_path / "p", workers=1).root
    assert runner.invoke(app, ["data", "list", "-C", str(root)]).exit_code == 0  # its schema made
    closed = f"127.0.0.1:{free_port()}"
    env = {**os.environ, **S3_ENV, "AWS_DEFAULT_REGION": "us-east-1"}
    env["AWS_ENDPOINT_URL"] = f"http://{closed}"
    sources = {
        "s3://bucket/lake.zip": "cannot open zip archive s3://bucket/lake.zip: ",
        "s3://bucket/lake.tar": "cannot read tar archive s3://bucket/lake.tar: ",
        "s3://bucket/m.csv": "cannot read manifest s3://bucket/m.csv: ",
        f"s3+http://{closed}/bucket/m.csv": f"cannot read manifest s3+http://{closed}/bucket/",
    }
    command = [sys.executable, "-m", "kennel.cli", "data", "ingest", "-d", "s3", "-C", str(root)]
    runs = {
        source: subprocess.Popen(
            [*command, source], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for source in sources
    }  # side by side: each waits out botocore's retries
    done = {source: (run.communicate(timeout=120), run.returncode) for source, run in runs.items()}
    for source, ((out, err), code) in done.items():
        assert code == 6, (source, err)
        lines = err.splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"error: {sources[source]}"), lines[0]
        assert "Could not connect to the endpoint URL" in lines[0], lines[0]
        assert out == ""


def test_an_archive_named_by_an_s3_http_url_is_refused_in_one_line(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", workers=1).root
    for source in ("s3+http://127.0.0.1:9/bucket/a.zip", "s3+https://h:9/bucket/a.tar.gz"):
        line = _one_line(_ingest(root, source, "s3"), "is named s3://bucket/key")
        assert "AWS_ENDPOINT_URL" in line  # where the server goes instead


def test_an_unreachable_or_missing_database_is_one_line(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", workers=1).root
    closed = f"postgresql+psycopg://kennel:s3cret@127.0.0.1:{free_port()}/test"
    line = _one_line(_ingest(root, closed, "sql", "--sql-table", "images"), "Connection refused")
    assert "s3cret" not in line and "kennel:***@" in line
    missing = tmp_path / "missing.db"
    line = _one_line(
        _ingest(root, f"sqlite:///{missing}", "sql", "--sql-table", "images"),
        "unable to open database file",
    )
    assert not missing.exists()  # opened read-only: a mistyped path creates no database


# -- FTP ---------------------------------------------------------------------------------------


def test_ftp_source_errors_are_one_line(tmp_path: Path, ftp: Ftp) -> None:
    write_tree(ftp.home / "lake", labelled_jpegs(4))
    (ftp.home / "m.csv").write_text("uri,label\nlake/cat/img0_0000.jpg,cat\n")
    root = make_project(tmp_path / "p", workers=1).root
    assert _ingest(root, ftp.url("lake"), "ftp").exit_code == 0  # the server works

    refused = f"ftp://kennel:pw@127.0.0.1:{free_port()}/lake"
    _one_line(_ingest(root, refused, "ftp"), "cannot open ftp://kennel:***@", "Connection refused")
    for source in (ftp.url("lake", password="wrong"), f"ftp://127.0.0.1:{ftp.port}/lake"):
        line = _one_line(_ingest(root, source, "ftp"), "530")  # was ftplib's traceback
        assert "wrong" not in line
    for path, what in (("m.csv", "manifest"), ("lake.zip", "zip archive")):
        _one_line(_ingest(root, ftp.url(path, password="wrong"), "ftp"), f"{what} ", "530")
    line = _one_line(_ingest(root, ftp.url("nope"), "ftp"), "/nope does not exist")
    assert "object store" not in line  # an FTP server has folders: a missing one is an error
    _one_line(_ingest(root, ftp.url("nope.csv"), "ftp"), "manifest", "does not exist")
    _one_line(_ingest(root, ftp.url("nope.zip"), "ftp"), "zip archive", "does not exist")


def _leaks(root: Path) -> list[Path]:
    """Every file kennel wrote in the project that holds the FTP password."""
    state = root / ".kennel"
    return [p for p in state.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]


def test_a_manifest_over_ftp_reads_its_rows_there(tmp_path: Path, ftp: Ftp) -> None:
    files = labelled_jpegs(4)
    write_tree(ftp.home / "lake", files)
    rows = "".join(f"{rel},{rel.split('/')[0]}\n" for rel in files)
    (ftp.home / "lake" / "m.csv").write_text("uri,label\n" + rows)
    root = make_project(tmp_path / "p", workers=1).root
    result = _ingest(root, ftp.url("lake/m.csv"), "ftp", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["added"] == 4 and report["quarantined"] == {}
    assert report["source"] == f"manifest:{ftp.url('lake/m.csv', password='***')}"
    assert _leaks(root) == []  # its rows are recorded without the manifest URL's password


def test_an_ftp_folder_is_recorded_without_its_password(tmp_path: Path, ftp: Ftp) -> None:
    """Its files were recorded as ftp://kennel:PASSWORD@host/... in the ingest records, the
    dataset's manifest (an immutable artifact) and every page that shows a file's uri."""
    write_tree(ftp.home / "lake", labelled_jpegs(4))
    root = make_project(tmp_path / "p", workers=1).root
    source = ftp.url("lake")
    first = _ingest(root, source, "pets")
    assert first.exit_code == 0 and "added 4" in first.stdout, first.output
    again = _ingest(root, source, "pets")  # the same files, known by the same uris
    assert again.exit_code == 0 and "unchanged" in again.stdout, again.output
    assert _leaks(root) == []
    shown = runner.invoke(app, ["data", "show", "pets", "--json", "-C", str(root)])
    assert shown.exit_code == 0 and PASSWORD not in shown.stdout


def test_options_a_manifest_or_table_would_ignore_are_refused(tmp_path: Path) -> None:
    """A manifest row names its label: ``--layout`` there was silently ignored; and one column
    cannot be both an image's uri and its label (every row was quarantined as an unknown
    label)."""
    root = make_project(tmp_path / "p").root
    lake = write_tree(tmp_path / "lake", labelled_jpegs(4))
    manifest = tmp_path / "m.csv"
    rows = [f"{path},{path.parent.name}" for path in sorted(lake.rglob("*.jpg"))]
    manifest.write_text("uri,label\n" + "\n".join(rows) + "\n")
    _one_line(_ingest(root, str(manifest), "m", "--layout", "flat"),
              "--layout is for a folder or an archive", "--label-column")  # fmt: skip
    _one_line(_ingest(root, str(manifest), "m", "--uri-column", "uri", "--label-column", "uri"),
              "both name column 'uri'")  # fmt: skip
    _one_line(_ingest(root, "postgresql://127.0.0.1/test", "m", "--sql-table", "t", "--layout",
                      "imagefolder"), "--layout is for a folder")  # fmt: skip
    listed = runner.invoke(app, ["data", "list", "-C", str(root), "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []  # nothing was ingested


def test_a_compressed_archive_of_nothing_is_told_from_an_empty_file(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p").root
    (tmp_path / "nothing.tgz").write_bytes(gzip.compress(b""))  # 20-odd bytes of gzip
    (tmp_path / "zero.tgz").write_bytes(b"")
    _one_line(_ingest(root, str(tmp_path / "nothing.tgz"), "t"), "decompresses to nothing")
    _one_line(_ingest(root, str(tmp_path / "zero.tgz"), "t"), "zero.tgz: empty file")
