"""Where images come from. Each source lists entries (uri, label, attrs) without reading bytes,
then reads the bytes of chosen entries in order. Every uri it records is one fsspec can open
again later (a local path, ``zip://member::archive``, ``memory://...``, ``s3://...``), which is what
lineage points at.

Layouts: ``imagefolder`` takes the label from the parent folder (``cat/001.jpg``); ``flat`` takes
it from the file-name prefix (Kaggle's ``cat.123.jpg``); ``auto`` picks ``flat`` when nearly all
names carry a prefix. Manifests (CSV, Parquet) and SQL queries give ``uri`` and ``label`` columns.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
import re
import tarfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import fsspec

from kennel.errors import SourceError

Layout = Literal["auto", "imagefolder", "flat"]
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".jfif"}
)
_FLAT_NAME = re.compile(r"^([A-Za-z][A-Za-z_-]*)[._-]\d+[^/]*$")
_SQL_SCHEMES = ("sqlite:", "postgresql", "mysql", "mariadb", "mssql", "oracle")
ReadResult = bytes | str  # bytes, or the reason they could not be read


@dataclass(frozen=True)
class Entry:
    uri: str
    label: str | None
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Listing:
    entries: list[Entry]
    ignored: int  # files skipped because their extension is not an image's


class Source(Protocol):
    def describe(self) -> str:
        """A canonical, human-readable description (recorded as the run's source)."""
        ...

    def scan(self) -> Listing: ...

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        """Bytes for each entry, in the given order; a string instead of bytes on failure."""
        ...


def is_image_name(name: str) -> bool:
    base = posixpath.basename(name)
    return not base.startswith(".") and posixpath.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def detect_layout(
    relpaths: list[str], labels: Sequence[str] = ()
) -> Literal["imagefolder", "flat"]:
    """Which layout explains the names best: the one giving more known labels when labels are
    configured, else ``flat`` only when all files share one parent folder and carry a prefix."""
    if not relpaths:
        return "imagefolder"
    if labels:
        allowed = set(labels)
        score = {
            layout: sum(1 for p in relpaths if label_for(p, layout) in allowed)
            for layout in ("imagefolder", "flat")
        }
        if score["flat"] != score["imagefolder"]:
            return "flat" if score["flat"] > score["imagefolder"] else "imagefolder"
    parents = {posixpath.dirname(p) for p in relpaths}
    flat = sum(1 for p in relpaths if _FLAT_NAME.match(posixpath.basename(p)))
    if len(parents) == 1 and flat >= 0.9 * len(relpaths):
        return "flat"
    return "imagefolder"


def label_for(relpath: str, layout: Literal["imagefolder", "flat"]) -> str | None:
    if layout == "flat":
        match = _FLAT_NAME.match(posixpath.basename(relpath))
        return match.group(1).lower() if match else None
    parent = posixpath.dirname(relpath)
    return posixpath.basename(parent) or None


def _split_images(relpaths: Iterable[str]) -> tuple[list[str], int]:
    images, ignored = [], 0
    for rel in relpaths:
        parts = rel.split("/")
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        if is_image_name(rel):
            images.append(rel)
        else:
            ignored += 1
    return sorted(images), ignored


def _labelled(
    relpaths: list[str], layout: Layout, labels: Sequence[str], uri_of: Any
) -> list[Entry]:
    chosen = detect_layout(relpaths, labels) if layout == "auto" else layout
    return [Entry(uri_of(rel), label_for(rel, chosen)) for rel in relpaths]


class FolderSource:
    """A local folder; symlinks that lead outside it are refused."""

    def __init__(self, root: Path, layout: Layout = "auto", labels: Sequence[str] = ()) -> None:
        self.root = root.resolve()
        self.layout = layout
        self.labels = tuple(labels)

    def describe(self) -> str:
        return f"folder:{self.root} layout={self.layout}"

    def scan(self) -> Listing:
        rels: list[str] = []
        for dirpath, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            base = Path(dirpath)
            rels.extend((base / f).relative_to(self.root).as_posix() for f in files)
        images, ignored = _split_images(rels)
        return Listing(
            _labelled(images, self.layout, self.labels, lambda r: str(self.root / r)), ignored
        )

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        for entry in entries:
            path = Path(entry.uri).resolve()
            if not path.is_relative_to(self.root):
                yield entry, f"unsafe path: {entry.uri} resolves outside {self.root}"
                continue
            try:
                yield entry, path.read_bytes()
            except OSError as exc:
                yield entry, f"unreadable: {exc.strerror or exc}"


class ZipSource:
    """A .zip archive (local or any fsspec URL), read member by member without extracting."""

    def __init__(self, url: str, layout: Layout = "auto", labels: Sequence[str] = ()) -> None:
        self.url = url
        self.layout = layout
        self.labels = tuple(labels)

    def describe(self) -> str:
        return f"zip:{self.url} layout={self.layout}"

    @contextmanager
    def _open(self) -> Iterator[zipfile.ZipFile]:
        try:
            with fsspec.open(self.url, "rb") as raw, zipfile.ZipFile(raw) as archive:
                yield archive
        except (OSError, zipfile.BadZipFile) as exc:
            raise SourceError(f"cannot open zip archive {self.url}: {exc}") from exc

    def scan(self) -> Listing:
        with self._open() as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
        images, ignored = _split_images(names)
        return Listing(
            _labelled(images, self.layout, self.labels, lambda r: f"zip://{r}::{self.url}"), ignored
        )

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        with self._open() as archive:
            for entry in entries:
                member = entry.uri[len("zip://") : entry.uri.rindex("::")]
                try:
                    yield entry, archive.read(member)
                except (OSError, KeyError, zipfile.BadZipFile, EOFError) as exc:
                    yield entry, f"unreadable archive member: {exc}"


class TarSource:
    """A .tar/.tar.gz/.tgz/.tar.bz2/.tar.xz archive, streamed in order (no random access)."""

    def __init__(self, url: str, layout: Layout = "auto", labels: Sequence[str] = ()) -> None:
        self.url = url
        self.layout = layout
        self.labels = tuple(labels)

    def describe(self) -> str:
        return f"tar:{self.url} layout={self.layout}"

    def _members(self) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
        try:
            with (
                fsspec.open(self.url, "rb") as raw,
                tarfile.open(fileobj=raw, mode="r|*") as archive,
            ):
                for member in archive:
                    if member.isfile():
                        yield archive, member
        except (OSError, tarfile.TarError) as exc:
            raise SourceError(f"cannot read tar archive {self.url}: {exc}") from exc

    def scan(self) -> Listing:
        images, ignored = _split_images(m.name for _a, m in self._members())
        return Listing(
            _labelled(images, self.layout, self.labels, lambda r: f"tar://{r}::{self.url}"), ignored
        )

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        wanted = {e.uri[len("tar://") : e.uri.rindex("::")]: e for e in entries}
        found: dict[str, ReadResult] = {}
        for archive, member in self._members():
            if member.name in wanted:
                handle = archive.extractfile(member)
                found[member.name] = handle.read() if handle else "unreadable archive member"
        for name, entry in wanted.items():
            yield entry, found.get(name, "archive member disappeared")


class FsspecFolderSource:
    """A folder on any fsspec filesystem (s3://bucket/prefix, memory://lake, ...)."""

    def __init__(self, url: str, layout: Layout = "auto", labels: Sequence[str] = ()) -> None:
        self.url = url.rstrip("/")
        self.layout = layout
        self.labels = tuple(labels)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise SourceError(f"cannot open {url}: {exc}") from exc
        self.root = self.root.rstrip("/")

    def describe(self) -> str:
        return f"fsspec:{self.url} layout={self.layout}"

    def scan(self) -> Listing:
        try:
            paths = self.fs.find(self.root)
        except OSError as exc:
            raise SourceError(f"cannot list {self.url}: {exc}") from exc
        prefix = self.root.strip("/")
        rels = [p.strip("/")[len(prefix) :].lstrip("/") for p in paths]
        images, ignored = _split_images(rels)
        return Listing(
            _labelled(images, self.layout, self.labels, lambda r: f"{self.url}/{r}"), ignored
        )

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        yield from read_uris(entries)


def read_uris(entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
    for entry in entries:
        try:
            with fsspec.open(entry.uri, "rb") as handle:
                yield entry, handle.read()
        except (OSError, ValueError, KeyError) as exc:
            yield entry, f"unreadable: {exc}"


def _resolve_uri(uri: str, base: str | None) -> str:
    if "://" in uri or os.path.isabs(uri) or base is None:
        return uri
    if "://" in base:
        return f"{base.rstrip('/')}/{uri}"
    resolved = (Path(base) / uri).resolve()
    if not resolved.is_relative_to(Path(base).resolve()):
        raise SourceError(f"manifest uri {uri!r} escapes the manifest's folder {base}")
    return str(resolved)


class TableSource:
    """Rows of (uri, label, extra columns) from a CSV/Parquet manifest or a SQL query."""

    def __init__(
        self,
        description: str,
        rows: list[dict[str, Any]],
        *,
        base: str | None,
        uri_column: str = "uri",
        label_column: str = "label",
    ) -> None:
        self.description = description
        if rows and (uri_column not in rows[0] or label_column not in rows[0]):
            raise SourceError(
                f"{description}: needs columns {uri_column!r} and {label_column!r}, "
                f"has {sorted(rows[0])}"
            )
        entries: dict[str, Entry] = {}
        for row in rows:
            uri = _resolve_uri(str(row[uri_column]), base)
            label = row[label_column]
            attrs = {
                str(k): str(v)
                for k, v in row.items()
                if k not in (uri_column, label_column) and v is not None
            }
            entries[uri] = Entry(uri, None if label in (None, "") else str(label), attrs)
        self.entries = [entries[u] for u in sorted(entries)]

    def describe(self) -> str:
        return self.description

    def scan(self) -> Listing:
        return Listing(self.entries, 0)

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        yield from read_uris(entries)


def manifest_source(url: str, **columns: str) -> TableSource:
    base = url.rsplit("/", 1)[0] if "://" in url else str(Path(url).resolve().parent)
    try:
        with fsspec.open(url, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise SourceError(f"cannot read manifest {url}: {exc}") from exc
    if url.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        rows = pq.read_table(io.BytesIO(data)).to_pylist()
    else:
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    return TableSource(f"manifest:{url}", rows, base=base, **columns)


def sql_source(url: str, *, query: str | None, table: str | None, **columns: str) -> TableSource:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    if (query is None) == (table is None):
        raise SourceError("a SQL source needs exactly one of --sql-table or --sql-query")
    if table is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", table):
        raise SourceError(f"invalid SQL table name {table!r}")
    statement = query if query is not None else f"SELECT * FROM {table}"
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = [dict(r._mapping) for r in connection.execute(text(statement))]
    except SQLAlchemyError as exc:
        raise SourceError(f"SQL source {url}: {exc.__class__.__name__}: {exc}") from exc
    finally:
        engine.dispose()
    return TableSource(f"sql:{url} {statement}", rows, base=None, **columns)


def open_source(
    spec: str,
    *,
    layout: Layout = "auto",
    labels: Sequence[str] = (),
    sql_query: str | None = None,
    sql_table: str | None = None,
    uri_column: str = "uri",
    label_column: str = "label",
) -> Source:
    """Pick the source type from ``spec``: a SQL URL, a manifest, an archive, a folder or a URL."""
    lower = spec.lower()
    columns = {"uri_column": uri_column, "label_column": label_column}
    if lower.startswith(_SQL_SCHEMES) and "://" in spec:
        return sql_source(spec, query=sql_query, table=sql_table, **columns)
    if lower.endswith((".csv", ".parquet")):
        return manifest_source(spec, **columns)
    if lower.endswith(".zip"):
        return ZipSource(spec if "://" in spec else str(Path(spec).resolve()), layout, labels)
    if lower.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return TarSource(spec if "://" in spec else str(Path(spec).resolve()), layout, labels)
    if "://" in spec and not spec.startswith("file://"):
        return FsspecFolderSource(spec, layout, labels)
    path = Path(spec.removeprefix("file://"))
    if not path.exists():
        raise SourceError(f"source {spec!r} does not exist")
    if not path.is_dir():
        raise SourceError(
            f"source {spec!r} is a file kennel cannot read as a dataset "
            "(expected a folder, .zip, .tar[.gz], .csv or .parquet)"
        )
    return FolderSource(path, layout, labels)
