"""Where images come from. Each source lists entries (uri, label, attrs) without reading bytes,
then reads the bytes of chosen entries in order. Every uri it records is one fsspec can open
again later (a local path, ``zip://member::archive``, ``memory://...``, ``s3://...``), which is what
lineage points at.

Layouts: ``imagefolder`` takes the label from the parent folder (``cat/001.jpg``); ``flat`` takes
it from the file-name prefix (Kaggle's ``cat.123.jpg``); ``auto`` picks ``flat`` when nearly all
names carry a prefix. Manifests (CSV, Parquet) and SQL queries give ``uri`` and ``label`` columns.

Hostile lakes: only regular files are ever opened (a FIFO would block the read forever), reads
stop at the size limit whatever a header claims, and what a listing leaves out for such reasons
is counted in ``Listing.skipped``. A manifest or SQL row may only point inside the manifest's own
folder or a declared root (``data.allowed_roots``): a table is data, and data must not choose
which files on this machine become a dataset.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import posixpath
import re
import stat
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import fsspec

from kennel.errors import SourceError

Layout = Literal["auto", "imagefolder", "flat"]
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".jfif"}
)
_FLAT_NAME = re.compile(r"^([A-Za-z][A-Za-z_-]*)[._-]\d+[^/]*$")
_SQL_SCHEMES = ("sqlite:", "postgresql", "mysql", "mariadb", "mssql", "oracle")
ReadResult = bytes | str  # bytes, or the reason they could not be read
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # data.max_file_bytes' default
OUTSIDE_ROOTS = "outside allowed roots"


@dataclass(frozen=True)
class Entry:
    uri: str
    label: str | None
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Listing:
    entries: list[Entry]
    ignored: int  # files skipped because their extension is not an image's
    # Names never offered as entries, by reason: special files, symlink loops, names that are
    # not UTF-8, archive members that climb out with ``..`` or are absolute.
    skipped: dict[str, int] = field(default_factory=dict)


class Source(Protocol):
    def describe(self) -> str:
        """A canonical, human-readable description (recorded as the run's source)."""
        ...

    def scan(self) -> Listing: ...

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        """Bytes for each entry, in the given order; a string instead of bytes on failure or
        when an entry holds more than the source's ``max_bytes`` (never more is read)."""
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


# Why a listing left a name out (``Listing.skipped``); none of these is ever opened.
NOT_REGULAR = "not a regular file"  # FIFO, socket, device; tar links
SYMLINK_LOOP = "symlink loop"
BROKEN_LINK = "broken symlink"
LINKED_FOLDER = "symlinked folder not followed"
BAD_NAME = "name not UTF-8"
UNSAFE_MEMBER = "archive member outside the archive"  # `..` or an absolute name
_USERINFO = re.compile(r"(://[^/@:\s]*:)[^/\s]*@")


# query parameters that carry secrets in database and storage URLs (libpq, psycopg, fsspec)
_SECRET_PARAM = re.compile(
    r"(?i)(?<=[?&;])((?:password|passwd|pwd|pass|secret|token|api_?key|access_?key|"
    r"secret_?key|sslpassword|key)[^=&;]*)=[^&;#]*"
)


def redact(url: str) -> str:
    """``url`` with its password shown as ``***``: what is stored, audited and printed."""
    if url.lower().startswith(_SQL_SCHEMES) and "://" in url:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        # a URL SQLAlchemy cannot parse still gets the generic rules below
        with contextlib.suppress(ArgumentError, ValueError):
            url = make_url(url).render_as_string(hide_password=True)
    url = _USERINFO.sub(r"\1***@", url)
    return _SECRET_PARAM.sub(r"\1=***", url)  # ?password=..., &token=..., ...


def _utf8(name: str) -> bool:
    """False for a name whose bytes were not UTF-8 (Python keeps them as lone surrogates): it
    could be neither stored as text in the metadata DB nor reopened from there by lineage."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unsafe_member(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return parts[0] == "" or ".." in parts or re.match(r"[A-Za-z]:", name) is not None


def _split_images(relpaths: Iterable[str]) -> tuple[list[str], int, Counter[str]]:
    images: list[str] = []
    ignored = 0
    skipped: Counter[str] = Counter()
    for rel in relpaths:
        if not _utf8(rel):
            skipped[BAD_NAME] += 1
        elif _unsafe_member(rel):
            skipped[UNSAFE_MEMBER] += 1
        elif any(p.startswith(".") or p == "__MACOSX" for p in rel.split("/")):
            continue  # hidden files and macOS resource forks are not data
        elif is_image_name(rel):
            images.append(rel)
        else:
            ignored += 1
    return sorted(images), ignored, skipped


def _listing(
    names: Iterable[str], layout: Layout, labels: Sequence[str], uri_of: Any, **more: int
) -> Listing:
    images, ignored, skipped = _split_images(names)
    skipped.update({k: v for k, v in more.items() if v})
    chosen = detect_layout(images, labels) if layout == "auto" else layout
    entries = [Entry(uri_of(rel), label_for(rel, chosen)) for rel in images]
    return Listing(entries, ignored, dict(sorted(skipped.items())))


def _too_large(size: int, limit: int, *, declared: bool = False) -> str:
    note = " declared, not inflated" if declared else ""
    return f"file too large: {size} bytes{note} (limit {limit})"


_PIECE = 1 << 20


def _read_capped(handle: IO[bytes], limit: int, expected: int | None = None) -> ReadResult:
    """At most ``limit + 1`` bytes, whatever a header said: a lying one costs nothing. Read in
    pieces, the first sized by the ``expected`` size, because ``read(limit + 1)`` would allocate
    the whole limit for every small file (3x slower on a lake of JPEGs)."""
    parts: list[bytes] = []
    total = 0
    want = _PIECE if expected is None else expected + 1
    while total <= limit:
        part = handle.read(min(want, limit + 1 - total))
        if not part:
            break
        parts.append(part)
        total += len(part)
        want = _PIECE
    if total > limit:
        return f"file too large: more than {limit} bytes (limit {limit})"
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _os_reason(exc: OSError) -> str:
    return SYMLINK_LOOP if exc.errno == errno.ELOOP else str(exc.strerror or exc)


def _read_local(path: str | Path, limit: int) -> ReadResult:
    """A local file's bytes, only when it is a regular file: opening a FIFO blocks until a
    writer appears and a device never ends, so neither is ever opened for reading."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return f"{NOT_REGULAR}: {path}"
        if info.st_size > limit:
            return _too_large(info.st_size, limit)
        # O_NONBLOCK: a file swapped for a FIFO since the stat still opens at once, and the
        # fstat refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb", buffering=0) as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return f"{NOT_REGULAR}: {path}"
            return _read_capped(handle, limit, info.st_size)
    except OSError as exc:
        return f"unreadable: {_os_reason(exc)}"


def _kind(item: os.DirEntry[str]) -> str:
    """``folder`` or ``file`` (a regular one, or a symlink to one), else why it is skipped."""
    try:
        if item.is_symlink():
            mode = os.stat(item.path).st_mode  # follows the link: a loop raises ELOOP
            if stat.S_ISDIR(mode):
                return LINKED_FOLDER
            return "file" if stat.S_ISREG(mode) else NOT_REGULAR
        if item.is_dir(follow_symlinks=False):
            return "folder"
        return "file" if item.is_file(follow_symlinks=False) else NOT_REGULAR
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return SYMLINK_LOOP
        return BROKEN_LINK if exc.errno == errno.ENOENT else f"unreadable ({_os_reason(exc)})"


class FolderSource:
    """A local folder: regular files only; symlinks that lead outside it are refused."""

    def __init__(
        self,
        root: Path,
        layout: Layout = "auto",
        labels: Sequence[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.max_bytes = max_bytes
        self.root = root.resolve()
        self.layout = layout
        self.labels = tuple(labels)

    def describe(self) -> str:
        return f"folder:{self.root} layout={self.layout}"

    def _walk(self) -> tuple[list[str], Counter[str]]:
        rels: list[str] = []
        skipped: Counter[str] = Counter()
        folders = [self.root]
        while folders:
            folder = folders.pop()
            try:
                with os.scandir(folder) as listing:
                    items = list(listing)
            except OSError as exc:
                skipped[f"unreadable folder ({_os_reason(exc)})"] += 1
                continue
            for item in items:
                if item.name.startswith("."):
                    continue  # hidden files and folders (.git, .DS_Store) are not data
                if not _utf8(item.name):
                    skipped[BAD_NAME] += 1
                    continue
                kind = _kind(item)
                if kind == "folder":
                    folders.append(Path(item.path))
                elif kind == "file":
                    rels.append(Path(item.path).relative_to(self.root).as_posix())
                else:
                    skipped[kind] += 1
        return rels, skipped

    def scan(self) -> Listing:
        rels, skipped = self._walk()
        return _listing(rels, self.layout, self.labels, lambda r: str(self.root / r), **skipped)

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        max_bytes = self.max_bytes
        for entry in entries:
            try:
                path = Path(entry.uri).resolve()
            except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
                yield entry, f"unreadable: {SYMLINK_LOOP}"
                continue
            if not path.is_relative_to(self.root):
                yield entry, f"unsafe path: {entry.uri} resolves outside {self.root}"
                continue
            yield entry, _read_local(path, max_bytes)


_ZIP_ERRORS = (
    OSError,
    KeyError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,  # a compression method zipfile lacks
    RuntimeError,  # an encrypted member
)


def _read_zip_member(archive: zipfile.ZipFile, member: str, limit: int) -> ReadResult:
    """Refused unread when the declared size is over ``limit``; cut off at ``limit + 1`` bytes
    while inflating whatever the header says."""
    try:
        info = archive.getinfo(member)
        if info.file_size > limit:
            return _too_large(info.file_size, limit, declared=True)
        with archive.open(info) as handle:
            return _read_capped(handle, limit, info.file_size)
    except _ZIP_ERRORS as exc:
        return f"unreadable archive member: {exc}"


class ZipSource:
    """A .zip archive (local or any fsspec URL), read member by member without extracting."""

    def __init__(
        self,
        url: str,
        layout: Layout = "auto",
        labels: Sequence[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.max_bytes = max_bytes
        self.url = url
        self.layout = layout
        self.labels = tuple(labels)

    def describe(self) -> str:
        return f"zip:{redact(self.url)} layout={self.layout}"

    @contextmanager
    def _open(self) -> Iterator[zipfile.ZipFile]:
        try:
            with fsspec.open(self.url, "rb") as raw, zipfile.ZipFile(raw) as archive:
                yield archive
        except (OSError, zipfile.BadZipFile) as exc:
            raise SourceError(f"cannot open zip archive {redact(self.url)}: {exc}") from exc

    def scan(self) -> Listing:
        with self._open() as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
        return _listing(names, self.layout, self.labels, lambda r: f"zip://{r}::{self.url}")

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        max_bytes = self.max_bytes
        with self._open() as archive:
            for entry in entries:
                member = entry.uri[len("zip://") : entry.uri.rindex("::")]
                yield entry, _read_zip_member(archive, member, max_bytes)


class TarSource:
    """A .tar/.tar.gz/.tgz/.tar.bz2/.tar.xz archive, streamed in order (no random access)."""

    def __init__(
        self,
        url: str,
        layout: Layout = "auto",
        labels: Sequence[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.max_bytes = max_bytes
        self.url = url
        self.layout = layout
        self.labels = tuple(labels)

    def describe(self) -> str:
        return f"tar:{redact(self.url)} layout={self.layout}"

    def _members(self) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
        try:
            with (
                fsspec.open(self.url, "rb") as raw,
                tarfile.open(fileobj=raw, mode="r|*") as archive,
            ):
                for member in archive:
                    yield archive, member
        except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:
            raise SourceError(f"cannot read tar archive {redact(self.url)}: {exc}") from exc

    def scan(self) -> Listing:
        names: list[str] = []
        special = 0
        for _archive, member in self._members():
            if member.isfile():
                names.append(member.name)
            elif not member.isdir():
                special += 1  # links, FIFOs, devices: never extracted
        return _listing(
            names,
            self.layout,
            self.labels,
            lambda r: f"tar://{r}::{self.url}",
            **{NOT_REGULAR: special},
        )

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        """In archive order, not the given one: a stream has no random access, and holding every
        member until the end would hold the whole dataset in memory."""
        max_bytes = self.max_bytes
        wanted = {e.uri[len("tar://") : e.uri.rindex("::")]: e for e in entries}
        for archive, member in self._members():
            entry = wanted.pop(member.name, None) if member.isfile() else None
            if entry is None:
                continue
            if member.size > max_bytes:
                yield entry, _too_large(member.size, max_bytes, declared=True)
                continue
            handle = archive.extractfile(member)
            if handle is None:
                yield entry, "unreadable archive member"
            else:
                yield entry, _read_capped(handle, max_bytes, member.size)
        for entry in wanted.values():
            yield entry, "archive member disappeared"


class FsspecFolderSource:
    """A folder on any fsspec filesystem (s3://bucket/prefix, memory://lake, ...)."""

    def __init__(
        self,
        url: str,
        layout: Layout = "auto",
        labels: Sequence[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.max_bytes = max_bytes
        self.url = url.rstrip("/")
        self.layout = layout
        self.labels = tuple(labels)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise SourceError(f"cannot open {redact(url)}: {exc}") from exc
        self.root = self.root.rstrip("/")

    def describe(self) -> str:
        return f"fsspec:{redact(self.url)} layout={self.layout}"

    def scan(self) -> Listing:
        try:
            paths = self.fs.find(self.root)
        except OSError as exc:
            raise SourceError(f"cannot list {redact(self.url)}: {exc}") from exc
        prefix = self.root.strip("/")
        rels = [p.strip("/")[len(prefix) :].lstrip("/") for p in paths]
        return _listing(rels, self.layout, self.labels, lambda r: f"{self.url}/{r}")

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        max_bytes = self.max_bytes
        for entry in entries:
            yield entry, read_uri(entry.uri, max_bytes)


def read_uri(uri: str, limit: int = DEFAULT_MAX_BYTES) -> ReadResult:
    """The bytes behind a recorded uri (a local path or any fsspec URL), at most ``limit``."""
    if uri.startswith("file://"):
        return _read_local(uri.removeprefix("file://"), limit)
    if "://" not in uri:
        return _read_local(uri, limit)
    try:
        with fsspec.open(uri, "rb") as handle:
            size = getattr(handle, "size", None)
            if not isinstance(size, int):
                size = None
            elif size > limit:
                return _too_large(size, limit)
            return _read_capped(handle, limit, size)
    except (OSError, ValueError, KeyError, ImportError) as exc:  # ImportError: no such backend
        return f"unreadable: {exc}"


def _fold_url(url: str) -> str | None:
    """``url`` with ``.`` and ``..`` segments folded; None when they climb above its host."""
    scheme, _, rest = url.partition("://")
    parts: list[str] = []
    for part in rest.split("/"):
        if part == "..":
            if len(parts) <= 1:
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    return f"{scheme}://{'/'.join(parts)}"


class Confinement:
    """Where manifest and SQL rows may point. By default a row is a path relative to the
    manifest's folder that stays inside it; an absolute path, a ``file://`` or other URL, or a
    ``..`` that leaves the folder is allowed only under one of ``roots`` (local folders, or URL
    prefixes such as ``s3://bucket/images/``)."""

    def __init__(self, base: str | None, roots: Sequence[str] = ()) -> None:
        self.base = base
        self.folders: list[Path] = []
        self.prefixes: list[str] = []
        for root in roots:
            if "://" in root and not root.startswith("file://"):
                folded = _fold_url(root)
                if folded:
                    self.prefixes.append(folded.rstrip("/") + "/")
            else:
                self.folders.append(Path(root.removeprefix("file://")).expanduser().resolve())

    def place(self, uri: str) -> str | None:
        """The uri to record and read, or None when it points outside every allowed root."""
        if uri.startswith("file://"):
            return self._local(Path(uri.removeprefix("file://")), self.folders)
        if "://" in uri:
            return self._url(uri, self.prefixes)
        if os.path.isabs(uri) or self.base is None:
            return self._local(Path(uri), self.folders)
        if "://" in self.base:
            base = self.base.rstrip("/")
            return self._url(f"{base}/{uri}", [base + "/", *self.prefixes])
        return self._local(Path(self.base) / uri, [Path(self.base).resolve(), *self.folders])

    @staticmethod
    def _local(path: Path, folders: Sequence[Path]) -> str | None:
        try:
            resolved = path.resolve()  # symlinks too: a link in the folder may lead out of it
        except (OSError, RuntimeError):
            return None
        return str(resolved) if any(resolved.is_relative_to(f) for f in folders) else None

    @staticmethod
    def _url(url: str, prefixes: Sequence[str]) -> str | None:
        folded = _fold_url(url)
        return folded if folded and folded.startswith(tuple(prefixes)) else None

    def refusal(self, row: int, uri: str) -> str:
        where = f"inside the manifest's folder {self.base} " if self.base else ""
        return (
            f"{OUTSIDE_ROOTS}: row {row} points at {uri!r}, which is not a path {where}"
            "nor under data.allowed_roots"
        )


class TableSource:
    """Rows of (uri, label, extra columns) from a CSV/Parquet manifest or a SQL query. Rows that
    point outside the allowed roots stay entries (so they are quarantined and reported) but are
    never read."""

    def __init__(
        self,
        description: str,
        rows: list[dict[str, Any]],
        *,
        base: str | None,
        allowed_roots: Sequence[str] = (),
        uri_column: str = "uri",
        label_column: str = "label",
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.description = description
        self.max_bytes = max_bytes
        if rows and (uri_column not in rows[0] or label_column not in rows[0]):
            raise SourceError(
                f"{description}: needs columns {uri_column!r} and {label_column!r}, "
                f"has {sorted(rows[0])}"
            )
        confinement = Confinement(base, allowed_roots)
        entries: dict[str, Entry] = {}
        self.refused: dict[str, str] = {}
        for number, row in enumerate(rows, start=1):
            written = str(row[uri_column])
            placed = confinement.place(written)
            uri = written if placed is None else placed
            if placed is None:
                self.refused[uri] = confinement.refusal(number, written)
            else:
                self.refused.pop(uri, None)
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
        max_bytes = self.max_bytes
        for entry in entries:
            refused = self.refused.get(entry.uri)
            yield entry, refused if refused is not None else read_uri(entry.uri, max_bytes)


def manifest_source(
    url: str,
    *,
    allowed_roots: Sequence[str] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
    **columns: str,
) -> TableSource:
    base = url.rsplit("/", 1)[0] if "://" in url else str(Path(url).resolve().parent)
    try:
        with fsspec.open(url, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise SourceError(f"cannot read manifest {redact(url)}: {exc}") from exc
    if url.lower().endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(io.BytesIO(data)).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"manifest {redact(url)} is not valid Parquet: {exc}") from exc
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SourceError(f"manifest {redact(url)} is not UTF-8 text: {exc}") from exc
        rows = list(csv.DictReader(io.StringIO(text)))
    return TableSource(
        f"manifest:{redact(url)}",
        rows,
        base=base,
        allowed_roots=allowed_roots,
        max_bytes=max_bytes,
        **columns,
    )


def sql_source(
    url: str,
    *,
    query: str | None,
    table: str | None,
    allowed_roots: Sequence[str] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
    **columns: str,
) -> TableSource:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    if (query is None) == (table is None):
        raise SourceError("a SQL source needs exactly one of --sql-table or --sql-query")
    if table is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", table):
        raise SourceError(f"invalid SQL table name {table!r}")
    statement = query if query is not None else f"SELECT * FROM {table}"
    shown = redact(url)
    try:
        password = make_url(url).password
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                rows = [dict(r._mapping) for r in connection.execute(text(statement))]
        finally:
            engine.dispose()
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        message = f"{exc.__class__.__name__}: {exc}"
        if password:  # a driver may echo what it was given
            message = message.replace(str(password), "***")
        raise SourceError(f"SQL source {shown}: {message}") from exc
    return TableSource(
        f"sql:{shown} {statement}",
        rows,
        base=None,
        allowed_roots=allowed_roots,
        max_bytes=max_bytes,
        **columns,
    )


def open_source(
    spec: str,
    *,
    layout: Layout = "auto",
    labels: Sequence[str] = (),
    sql_query: str | None = None,
    sql_table: str | None = None,
    uri_column: str = "uri",
    label_column: str = "label",
    allowed_roots: Sequence[str] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Source:
    """Pick the source type from ``spec``: a SQL URL, a manifest, an archive, a folder or a URL.
    ``allowed_roots``: where manifest and SQL rows may point besides the manifest's folder;
    ``max_bytes``: no file is read beyond this (``data.max_file_bytes``)."""
    if not _utf8(spec):
        raise SourceError(f"source {spec!r} is not a UTF-8 name; rename it")
    lower = spec.lower()
    columns = {"uri_column": uri_column, "label_column": label_column}
    if lower.startswith(_SQL_SCHEMES) and "://" in spec:
        return sql_source(
            spec,
            query=sql_query,
            table=sql_table,
            allowed_roots=allowed_roots,
            max_bytes=max_bytes,
            **columns,
        )
    if lower.endswith((".csv", ".parquet")):
        return manifest_source(spec, allowed_roots=allowed_roots, max_bytes=max_bytes, **columns)
    local = spec if "://" in spec else str(Path(spec).resolve())
    if lower.endswith(".zip"):
        return ZipSource(local, layout, labels, max_bytes)
    if lower.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return TarSource(local, layout, labels, max_bytes)
    if "://" in spec and not spec.startswith("file://"):
        return FsspecFolderSource(spec, layout, labels, max_bytes)
    path = Path(spec.removeprefix("file://"))
    if not path.exists():
        raise SourceError(f"source {spec!r} does not exist")
    if not path.is_dir():
        raise SourceError(
            f"source {spec!r} is a file kennel cannot read as a dataset "
            "(expected a folder, .zip, .tar[.gz], .csv or .parquet)"
        )
    return FolderSource(path, layout, labels, max_bytes)
