"""One contract, checked over every source kennel can ingest from (as scikit-learn checks every
estimator): a local folder, a zip and a tar archive, an fsspec folder (``memory://``, and one on
a file system without folders, as object stores are), a CSV manifest (by path and by
``file://`` URL), a Parquet one, and a PostgreSQL table. Every test runs the same assertions
over each ``Lake``: a real store holding the same files, and the source ``open_source`` picks
for it.

The contract: a listing is sorted by uri, stable, and labels each file as the source defines
(parent folder, or the label column, which these lakes fill with the parent folder); reads give
each requested entry's exact bytes, and its recorded uri opens again for lineage; odd names
(spaces, unicode, dots, very long, URL characters) are ordinary, and one holding ``::`` reads
back or, where uris are fsspec URLs, is skipped with its reason; a name that tries to leave the
lake (``..``, absolute, a symlink or a row pointing outside) is never read, and a skipped one is
counted under a reason that fits the lake; a missing or broken location is a ``SourceError``
naming it, except on object stores, where a missing prefix lists as empty with a note; an item
gone after the listing is a reason, not an exception; an empty lake lists nothing, and
ingesting it fails saying that nothing was found; no read goes beyond ``max_bytes``.
"""

from __future__ import annotations

import csv
import io
import random
import re
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import fsspec.implementations.memory
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text

from kennel.errors import SourceError
from kennel.ingest.sources import (
    CHAINED_NAME,
    LINKED_FOLDER,
    OUTSIDE_FOLDER,
    UNSAFE_MEMBER,
    Entry,
    FolderSource,
    FsspecFolderSource,
    LocalFile,
    LocatingSource,
    ReadResult,
    Source,
    TableSource,
    TarSource,
    ZipSource,
    open_source,
    read_uri,
)
from kennel.wiring import Workspace

SECRET = b"SECRET: a file outside the lake, never to be read " * 4


def _files(*names: str) -> dict[str, bytes]:
    return {name: f"bytes of {name}".encode() for name in names}


PLAIN = _files("cat/a.jpg", "cat/b.jpg", "dog/a.jpg", "dog/c.png", "pets/indoor/dog/d.jpg")
ODD = _files(
    "cat/with spaces in it.jpg",
    "cat/ünïcødé 猫.jpg",
    "café/x.jpg",  # a unicode label
    "dog/many.dots.in.the.name.jpg",
    "dog/a..b.jpg",
    "dog/" + "long" * 50 + ".jpg",  # 204 characters, near a file system's 255-byte limit
    "dog/url#chars?and=100%25.jpg",
    "dog/UPPER.JPG",
    "unlabelled.jpg",  # at the top: no folder, no label
)


def _label(rel: str) -> str | None:
    """The label each lake means for ``rel``: its parent folder's name (tree sources read it
    from the path, table sources from the label column these lakes fill with it)."""
    parts = rel.split("/")
    return parts[-2] if len(parts) > 1 else None


class Lake:
    """A real store holding files, and the source kennel opens over it."""

    name: ClassVar[str]
    source_class: ClassVar[type]
    streams: ClassVar[bool] = False  # reads in its own order, not the requested one
    # object stores have no folders: a prefix nothing was written under is an empty one
    missing_lists_nothing: ClassVar[bool] = False
    # uris are fsspec URLs, where ``::`` chains file systems: a name holding it is skipped
    url_uris: ClassVar[bool] = False
    # the reasons ``open(..., escaping=True)``'s listing counts what it leaves out under
    escape_reasons: ClassVar[set[str]] = set()
    layout: ClassVar[str] = "imagefolder"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp.resolve()
        self.root = self.tmp / "lake"
        self.secret = self.tmp / "outside" / "secret.jpg"
        self.secret.parent.mkdir()
        self.secret.write_bytes(SECRET)
        self.escapes = 0  # names written that try to leave the lake

    def open(self, files: dict[str, bytes], *, escaping: bool = False, **options: Any) -> Source:
        ordered = list(files.items())
        random.Random(len(ordered)).shuffle(ordered)  # the listing must not follow write order
        spec = self.fill(dict(ordered), escaping=escaping)
        return open_source(spec, layout=self.layout, **{**self.options(), **options})

    def options(self) -> dict[str, Any]:
        return {}

    def fill(self, files: dict[str, bytes], *, escaping: bool) -> str:
        raise NotImplementedError

    def uri(self, rel: str) -> str:
        """The uri the source records for the file ``rel``."""
        raise NotImplementedError

    def where(self) -> str:
        """What ``describe()`` names."""
        raise NotImplementedError

    def spoil(self, rel: str) -> None:
        """Take ``rel`` away after the listing."""
        raise NotImplementedError

    def open_missing(self) -> Source:
        raise NotImplementedError

    def open_broken(self) -> Source:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FolderLake(Lake):
    name = "folder"
    source_class: ClassVar[type] = FolderSource
    escape_reasons: ClassVar[set[str]] = {LINKED_FOLDER}

    def fill(self, files: dict[str, bytes], *, escaping: bool) -> str:
        self.root.mkdir()
        for rel, data in files.items():
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.root / rel).write_bytes(data)
        if escaping:
            (self.root / "cat").mkdir(exist_ok=True)
            (self.root / "cat" / "link.jpg").symlink_to(self.secret)
            (self.root / "elsewhere").symlink_to(self.secret.parent, target_is_directory=True)
            self.escapes = 2
        return str(self.root)

    def uri(self, rel: str) -> str:
        return str(self.root / rel)

    def where(self) -> str:
        return str(self.root)

    def spoil(self, rel: str) -> None:
        (self.root / rel).unlink()

    def open_missing(self) -> Source:
        return open_source(str(self.tmp / "nope"))

    def open_broken(self) -> Source:
        (self.tmp / "nope.bin").write_bytes(b"a file, not a folder")
        return open_source(str(self.tmp / "nope.bin"))


class ZipLake(Lake):
    name = "zip"
    source_class: ClassVar[type] = ZipSource
    suffix = ".zip"
    url_uris = True
    escape_reasons: ClassVar[set[str]] = {UNSAFE_MEMBER}

    @property
    def archive(self) -> Path:
        return self.tmp / f"lake{self.suffix}"

    def fill(self, files: dict[str, bytes], *, escaping: bool) -> str:
        members = dict(files)
        if escaping:
            hostile = ["../outside/secret.jpg", str(self.secret), "cat/../../outside/secret.jpg"]
            members.update(dict.fromkeys(hostile, SECRET))
            self.escapes = len(hostile)
        self.write(members)
        self.members = members
        return str(self.archive)

    def write(self, members: dict[str, bytes]) -> None:
        with zipfile.ZipFile(self.archive, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)

    def uri(self, rel: str) -> str:
        return f"zip://{rel}::{self.archive}"

    def where(self) -> str:
        return str(self.archive)

    def spoil(self, rel: str) -> None:
        self.write({k: v for k, v in self.members.items() if k != rel})

    def open_missing(self) -> Source:
        return open_source(str(self.tmp / f"nope{self.suffix}"))

    def open_broken(self) -> Source:
        (self.tmp / f"nope{self.suffix}").write_bytes(b"not an archive at all " * 20)
        return open_source(str(self.tmp / f"nope{self.suffix}"))


class TarLake(ZipLake):
    name = "tar"
    source_class = TarSource
    suffix = ".tar.gz"
    streams = True

    def write(self, members: dict[str, bytes]) -> None:
        with tarfile.open(self.archive, "w:gz") as archive:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))

    def uri(self, rel: str) -> str:
        return f"tar://{rel}::{self.archive}"


class MemoryLake(Lake):
    """An fsspec folder, on fsspec's in-memory file system (what the fsspec tests use)."""

    name = "fsspec-memory"
    source_class = FsspecFolderSource
    protocol = "memory"
    url_uris = True
    escape_reasons: ClassVar[set[str]] = {OUTSIDE_FOLDER}

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.fs = fsspec.filesystem(self.protocol)
        self.top = f"/contract-{uuid.uuid4().hex}"
        self.url = f"{self.protocol}:/{self.top}/lake"
        self.fs.pipe_file(f"{self.top}/outside/secret.jpg", SECRET)

    def fill(self, files: dict[str, bytes], *, escaping: bool) -> str:
        self.fs.mkdir(f"{self.top}/lake")
        for rel, data in files.items():
            self.fs.pipe_file(f"{self.top}/lake/{rel}", data)
        if escaping:  # names stored as written, dots and all
            for name in ("../outside/secret.jpg", "cat/../../outside/secret.jpg"):
                self.fs.pipe_file(f"{self.top}/lake/{name}", SECRET)
            self.escapes = 2
        return self.url

    def uri(self, rel: str) -> str:
        return f"{self.url}/{rel}"

    def where(self) -> str:
        return self.url

    def spoil(self, rel: str) -> None:
        self.fs.rm(f"{self.top}/lake/{rel}")

    def open_missing(self) -> Source:
        return open_source(f"{self.protocol}:/{self.top}/nope")

    def open_broken(self) -> Source:
        return open_source(f"nosuchprotocol:/{self.top}/lake")

    def close(self) -> None:
        self.fs.rm(self.top, recursive=True)


class FlatStore(fsspec.implementations.memory.MemoryFileSystem):
    """fsspec's in-memory file system under a protocol kennel does not know to have folders,
    as S3, GCS and Azure have none (no object store runs here): kennel must treat it as one."""

    protocol = "kennelflat"

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return str(super()._strip_protocol(path.removeprefix("kennelflat://")))


fsspec.register_implementation(FlatStore.protocol, FlatStore, clobber=True)


class FlatLake(MemoryLake):
    """An fsspec folder on a store without folders: a prefix nothing is under lists as empty."""

    name = "fsspec-flat"
    protocol = FlatStore.protocol
    missing_lists_nothing = True


class CsvLake(FolderLake):
    """Files in a folder, listed by a manifest inside it (rows relative to its folder)."""

    name = "manifest-csv"
    source_class = TableSource
    layout = "auto"  # a row names its label: a layout is refused
    suffix = ".csv"
    escape_reasons: ClassVar[set[str]] = set()

    def fill(self, files: dict[str, bytes], *, escaping: bool) -> str:
        super().fill(files, escaping=False)
        rows = [{"uri": rel, "label": _label(rel) or ""} for rel in files]
        if escaping:
            (self.root / "cat").mkdir(exist_ok=True)
            (self.root / "cat" / "link.jpg").symlink_to(self.secret)
            hostile = [*self.outside(), "cat/link.jpg"]
            rows += [{"uri": uri, "label": "cat"} for uri in hostile]
            self.escapes = len(hostile)
        self.write(self.manifest, rows)
        return str(self.manifest)

    @property
    def manifest(self) -> Path:
        return self.root / f"manifest{self.suffix}"

    def outside(self) -> list[str]:
        return [
            "../outside/secret.jpg",
            "cat/../../outside/secret.jpg",
            str(self.secret),
            f"file://{self.secret}",
            "s3://bucket/secret.jpg",
        ]

    def write(self, manifest: Path, rows: list[dict[str, str]]) -> None:
        with open(manifest, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["uri", "label"])
            writer.writeheader()
            writer.writerows(rows)

    def where(self) -> str:
        return str(self.manifest)

    def open_missing(self) -> Source:
        return open_source(str(self.tmp / f"nope{self.suffix}"))

    def open_broken(self) -> Source:
        (self.tmp / f"nope{self.suffix}").write_bytes(b"\xff\xfe\x00 not UTF-8 \xff, nor Parquet")
        return open_source(str(self.tmp / f"nope{self.suffix}"))


class CsvUrlLake(CsvLake):
    """The same manifest named by a ``file://`` URL: the path it names, read and confined as
    that path is (its rows were once confined as URL prefixes, which follow no symlink)."""

    name = "manifest-csv-file-url"

    def fill(self, files: dict[str, bytes], *, escaping: bool) -> str:
        return f"file://{super().fill(files, escaping=escaping)}"

    def open_missing(self) -> Source:
        return open_source(f"file://{self.tmp / 'nope.csv'}")

    def open_broken(self) -> Source:
        (self.tmp / "nope.csv").write_bytes(b"\xff\xfe\x00 not UTF-8 \xff")
        return open_source(f"file://{self.tmp / 'nope.csv'}")


class ParquetLake(CsvLake):
    name = "manifest-parquet"
    suffix = ".parquet"

    def write(self, manifest: Path, rows: list[dict[str, str]]) -> None:
        schema = pa.schema([("uri", pa.string()), ("label", pa.string())])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), manifest)


class SqlLake(CsvLake):
    """Files in a folder, listed by a PostgreSQL table of absolute paths (one schema per test),
    which ``data.allowed_roots`` lets point into the lake."""

    name = "sql-postgresql"

    def __init__(self, tmp: Path, url: str) -> None:
        super().__init__(tmp)
        self.url = url

    def options(self) -> dict[str, Any]:
        return {"sql_table": "lake_images", "allowed_roots": [str(self.root)]}

    def fill(self, files: dict[str, bytes], *, escaping: bool) -> str:
        super().fill(files, escaping=escaping)
        return self.url

    def outside(self) -> list[str]:
        return [
            f"{self.root}/../outside/secret.jpg",
            str(self.secret),
            f"file://{self.secret}",
            "s3://bucket/secret.jpg",
        ]

    def write(self, manifest: Path, rows: list[dict[str, str]]) -> None:
        absolute = [{**r, "uri": self._absolute(r["uri"])} for r in rows]
        engine = create_engine(self.url)
        try:
            with engine.begin() as connection:
                connection.execute(text("CREATE TABLE lake_images (uri TEXT, label TEXT)"))
                if absolute:
                    connection.execute(
                        text("INSERT INTO lake_images VALUES (:uri, :label)"), absolute
                    )
        finally:
            engine.dispose()

    def _absolute(self, uri: str) -> str:
        return uri if "://" in uri or uri.startswith("/") else str(self.root / uri)

    def where(self) -> str:
        return "lake_images"

    def open_missing(self) -> Source:
        return open_source(self.url, sql_table="no_such_table")

    def open_broken(self) -> Source:
        return open_source(self.url, sql_query="SELEC uri, label FROM no_such_table")


LAKES: list[type[Lake]] = [
    FolderLake,
    ZipLake,
    TarLake,
    MemoryLake,
    FlatLake,
    CsvLake,
    CsvUrlLake,
    ParquetLake,
    SqlLake,
]


@pytest.fixture(params=LAKES, ids=[lake.name for lake in LAKES])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lake]:
    kind: type[Lake] = request.param
    made = (
        SqlLake(tmp_path, request.getfixturevalue("pg_url")) if kind is SqlLake else kind(tmp_path)
    )
    yield made
    made.close()


def _read(source: Source, entries: list[Entry]) -> dict[str, ReadResult]:
    results = list(source.read(entries))
    assert sorted(e.uri for e, _ in results) == sorted(e.uri for e in entries)  # each once
    return {entry.uri: data for entry, data in results}


# -- listing -----------------------------------------------------------------------------------


def test_open_source_picks_the_implementation(lake: Lake) -> None:
    assert type(lake.open(PLAIN)) is lake.source_class


def test_listing_is_sorted_stable_and_labelled(lake: Lake) -> None:
    source = lake.open(PLAIN)
    listing = source.scan()
    expected = sorted((lake.uri(rel), _label(rel)) for rel in PLAIN)
    assert [(e.uri, e.label) for e in listing.entries] == expected
    assert listing.skipped == {}
    assert source.scan() == listing  # the same listing every time: a resumed run relies on it


def test_describe_names_the_location_and_is_stable(lake: Lake) -> None:
    source = lake.open(PLAIN)
    assert lake.where() in source.describe()
    assert source.describe() == source.describe()


# -- reading -----------------------------------------------------------------------------------


def test_reads_exact_bytes_and_uris_open_again(lake: Lake) -> None:
    source = lake.open(PLAIN)
    read = _read(source, source.scan().entries)
    assert read == {lake.uri(rel): data for rel, data in PLAIN.items()}
    for uri, data in read.items():  # lineage reopens a recorded uri without the source
        assert read_uri(uri) == data


def test_reads_only_the_requested_entries_in_order(lake: Lake) -> None:
    source = lake.open(PLAIN)
    entries = source.scan().entries
    chosen = [entries[3], entries[0], entries[2]]
    results = list(source.read(chosen))
    order = [e for e, _ in results]
    if lake.streams:  # a tar stream yields in archive order, each requested entry once
        assert sorted(e.uri for e in order) == sorted(e.uri for e in chosen)
    else:
        assert order == chosen
    for entry, data in results:
        assert data == PLAIN[next(r for r in PLAIN if lake.uri(r) == entry.uri)]


def test_reads_stop_at_the_size_limit(lake: Lake) -> None:
    files = {"cat/small.jpg": b"s" * 10, "cat/edge.jpg": b"e" * 1000, "dog/big.jpg": b"b" * 3000}
    source = lake.open(files, max_bytes=1000)
    read = _read(source, source.scan().entries)
    assert read[lake.uri("cat/small.jpg")] == files["cat/small.jpg"]
    assert read[lake.uri("cat/edge.jpg")] == files["cat/edge.jpg"]  # the limit itself is allowed
    big = read[lake.uri("dog/big.jpg")]
    assert isinstance(big, str) and big.startswith("file too large: "), big


# -- names -------------------------------------------------------------------------------------


def test_odd_names_are_ordinary(lake: Lake) -> None:
    source = lake.open(ODD)
    listing = source.scan()
    assert [(e.uri, e.label) for e in listing.entries] == sorted(
        (lake.uri(rel), _label(rel)) for rel in ODD
    )
    assert _read(source, listing.entries) == {lake.uri(rel): d for rel, d in ODD.items()}


def test_a_name_holding_double_colons_reads_back_or_is_skipped(lake: Lake) -> None:
    """``::`` chains file systems in an fsspec URL (``zip://member::archive``): a name holding
    it reads back where uris are local paths, and is skipped, not misread, where they are URLs."""
    chained = _files("cat/a::b.jpg", "dog/::.jpg", "pets::x/dog/e.jpg")
    files = {**PLAIN, **chained}
    source = lake.open(files)
    listing = source.scan()
    kept = PLAIN if lake.url_uris else files
    assert [(e.uri, e.label) for e in listing.entries] == sorted(
        (lake.uri(rel), _label(rel)) for rel in kept
    )
    assert listing.skipped == ({CHAINED_NAME: len(chained)} if lake.url_uris else {})
    read = _read(source, listing.entries)
    assert read == {lake.uri(rel): data for rel, data in kept.items()}
    for uri, data in read.items():
        assert read_uri(uri) == data


def test_names_that_leave_the_lake_are_never_read(lake: Lake) -> None:
    source = lake.open(PLAIN, escaping=True)
    listing = source.scan()
    read = _read(source, listing.entries)
    good = {lake.uri(rel): data for rel, data in PLAIN.items()}
    assert {uri: read[uri] for uri in good} == good
    refused = {uri: reason for uri, reason in read.items() if uri not in good}
    assert set(listing.skipped) == lake.escape_reasons, listing.skipped
    assert SECRET not in read.values()
    assert all(isinstance(reason, str) for reason in refused.values()), refused
    # each attempt is accounted for: offered and refused, or counted as skipped
    assert len(refused) + sum(listing.skipped.values()) == lake.escapes > 0
    for reason in refused.values():
        assert re.match(r"(unsafe path|outside allowed roots): ", str(reason)), reason


def test_located_files_read_as_the_source_reads_them(lake: Lake) -> None:
    """What an ingest's workers read from a located file (its path, read in the worker) is
    exactly what the source's own read gives: the same bytes, the same refusals."""
    source = lake.open(PLAIN, escaping=True)
    if not isinstance(source, LocatingSource):
        return  # archives and remote folders are read by the driver
    entries = source.scan().entries
    located = list(source.locate(entries))
    assert [e.uri for e, _ in located] == [e.uri for e in entries]
    folders: dict[str, str] = {}  # shared by a batch, as a worker shares it
    worker = {e.uri: f.read(folders) if isinstance(f, LocalFile) else f for e, f in located}
    assert worker == _read(source, entries)
    assert any(isinstance(f, LocalFile) for _e, f in located)
    assert SECRET not in worker.values()


# -- errors ------------------------------------------------------------------------------------


def test_missing_location_is_a_source_error(lake: Lake) -> None:
    if lake.missing_lists_nothing:
        listing = lake.open_missing().scan()
        assert (listing.entries, listing.ignored, listing.skipped) == ([], 0, {})
        assert re.search(r"nothing is stored under \S*/nope: .* mistyped", listing.note), listing
        return
    with pytest.raises(SourceError, match=r"nope|no_such_table") as caught:
        lake.open_missing().scan()
    assert re.search(r"does not exist|No such file|cannot", str(caught.value)), caught.value


def test_unreadable_location_is_a_source_error(lake: Lake) -> None:
    with pytest.raises(SourceError, match=r"nope|SELEC|nosuchprotocol"):
        lake.open_broken().scan()


def test_an_item_gone_after_listing_is_a_reason_not_an_exception(lake: Lake) -> None:
    source = lake.open(PLAIN)
    entries = source.scan().entries
    lake.spoil("cat/b.jpg")
    read = _read(source, entries)
    gone = read.pop(lake.uri("cat/b.jpg"))
    assert isinstance(gone, str) and re.match(r"unreadable|archive member disappeared", gone)
    assert read == {lake.uri(r): d for r, d in PLAIN.items() if r != "cat/b.jpg"}


def test_an_empty_lake_lists_nothing(lake: Lake) -> None:
    source = lake.open({})
    listing = source.scan()
    assert (listing.entries, listing.ignored, listing.skipped) == ([], 0, {})
    assert bool(listing.note) == lake.missing_lists_nothing  # where empty may mean mistyped
    assert list(source.read([])) == []


def test_ingesting_an_empty_lake_says_nothing_was_found(lake: Lake, workspace: Workspace) -> None:
    source = lake.open({})
    with pytest.raises(SourceError) as caught:
        workspace.ingestor().run(source, "empty")
    message = str(caught.value)
    assert source.describe() in message
    assert "nothing found: no image files" in message, message
    assert ("check it is not mistyped" in message) == lake.missing_lists_nothing, message


def test_every_source_class_is_covered() -> None:
    """The five classes ``open_source`` can return each have a lake above."""
    assert {lake.source_class for lake in LAKES} == {
        FolderSource,
        ZipSource,
        TarSource,
        FsspecFolderSource,
        TableSource,
    }
