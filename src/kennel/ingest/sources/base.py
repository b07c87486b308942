"""What every source shares: the entries and listings it yields, the :class:`Source` protocol,
how file names become labelled entries, and capped reads of local paths and fsspec URLs."""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Literal, Protocol, runtime_checkable

import fsspec

from kennel.display import redact

Layout = Literal["auto", "imagefolder", "flat"]
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".jfif"}
)
_FLAT_NAME = re.compile(r"^([A-Za-z][A-Za-z_-]*)[._-]\d+[^/]*\Z")
ReadResult = bytes | str  # bytes, or the reason they could not be read
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # data.max_file_bytes' default
OUTSIDE_ROOTS = "outside allowed roots"

# Why a listing left a name out (``Listing.skipped``); none of these is ever opened.
NOT_REGULAR = "not a regular file"  # FIFO, socket, device; tar links
SYMLINK_LOOP = "symlink loop"
BROKEN_LINK = "broken symlink"
LINKED_FOLDER = "symlinked folder not followed"
BAD_NAME = "name not UTF-8"
UNSAFE_MEMBER = "archive member outside the archive"  # `..` or an absolute name
OUTSIDE_FOLDER = "name leads outside the folder"  # `..` in a name on an fsspec file system
CHAINED_NAME = "name contains '::', which URLs cannot carry"  # fsspec's chaining separator
REPEATED_ROW = "row naming a file an earlier row names"  # same label: the file is offered once
NO_URI = "row without a uri"  # empty or null: no file to read (never read as a path)
REPEATED_MEMBER = "archive member name repeated (the first is read)"  # one uri, one file
LABEL_CONFLICT = "label conflict"  # a reason's kind: one content or file under two labels
MALFORMED_ROW = "malformed row"  # a reason's kind: a manifest row the header does not fit


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
    # not UTF-8, names that climb out with ``..`` or are absolute, names a URL cannot carry.
    skipped: dict[str, int] = field(default_factory=dict)
    # What the source adds about this listing, such as why an empty one may be a mistake.
    note: str = ""


class Source(Protocol):
    def describe(self) -> str:
        """A canonical, human-readable description (recorded as the run's source)."""
        ...

    def scan(self) -> Listing: ...

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        """Bytes for each entry, in the given order; a string instead of bytes on failure or
        when an entry holds more than the source's ``max_bytes`` (never more is read)."""
        ...


@dataclass(frozen=True)
class LocalFile:
    """A file on this machine's disk, to be read later, by whichever process checks it: an
    ingest's workers read their files themselves instead of receiving the bytes from the
    driver. ``read`` does exactly what the source's own ``read`` would: at most ``limit``
    bytes, regular files only, and, when ``root`` is given, only a path that resolves
    (symlinks followed) inside it."""

    path: str
    limit: int
    root: str | None = None

    def read(self, folders: dict[str, str] | None = None) -> ReadResult:
        """The bytes, or why not. ``folders``: resolved folders (by the name they were asked
        by) shared by the reads of one batch, so that a folder of many files is resolved once;
        the file's own name is still checked for being a symlink each time."""
        if self.root is None:
            return read_local(self.path, self.limit)
        try:
            path = _resolved(self.path, {} if folders is None else folders)
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
            return f"unreadable: {SYMLINK_LOOP}"
        if not Path(path).is_relative_to(self.root):
            return f"unsafe path: {self.path} resolves outside {self.root}"
        return read_local(path, self.limit)


def _resolved(path: str, folders: dict[str, str]) -> str:
    """``Path(path).resolve()``, its folder looked up in ``folders`` first."""
    folder, name = os.path.split(path)
    real = folders.get(folder)
    if real is None:
        real = folders[folder] = str(Path(folder).resolve())
    joined = os.path.join(real, name)
    return str(Path(joined).resolve()) if os.path.islink(joined) else joined


Located = ReadResult | LocalFile


@runtime_checkable
class LocatingSource(Source, Protocol):
    """A source whose files are (some or all) local: besides reading them, it can name them,
    so that the processes checking them read them."""

    def locate(self, entries: list[Entry]) -> Iterator[tuple[Entry, Located]]:
        """For each entry, in the given order, what ``read`` would give, except that a local
        file may come as a :class:`LocalFile` whose ``read()`` gives it."""
        ...


@runtime_checkable
class DisputingSource(Source, Protocol):
    """A source that refuses, unread, a file it names with two labels (a manifest's rows)."""

    def disputed(self) -> dict[str, tuple[set[str], str]]:
        """Each such file's content by sha256: the labels it was named with, and the file."""
        ...


@dataclass(eq=False, repr=False)
class FileTreeSource:
    """The settings every source of file names shares (a folder, an archive, an fsspec
    folder): ``layout`` reads labels from the names, ``labels`` helps ``auto`` choose, and no
    read goes beyond ``max_bytes``. A subclass also derives from the dataclass holding its
    location (:class:`AtRoot`, :class:`AtUrl`), listed after this one so that the location is
    the constructor's first parameter: ``ZipSource(url, layout, labels, max_bytes)``. Sources
    compare by identity, and have no generated repr (a URL may carry a password)."""

    layout: Layout = "auto"
    labels: Sequence[str] = ()
    max_bytes: int = DEFAULT_MAX_BYTES
    # The reason a name climbing out with ``..`` (or absolute) is counted under.
    outside: ClassVar[str] = UNSAFE_MEMBER
    # Whether the uris are fsspec URLs, where ``::`` chains file systems: a name holding it
    # would be recorded under a uri that no longer opens it, so it is skipped.
    url_uris: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)

    def _listing(self, names: Iterable[str], uri_of: Callable[[str], str], **more: int) -> Listing:
        """Entries for the image ``names`` (relative to the tree), sorted; ``more`` counts
        names the caller left out, by reason."""
        images, ignored, skipped = _split_images(names, self.outside, self.url_uris)
        skipped.update({k: v for k, v in more.items() if v})
        layout = detect_layout(images, self.labels) if self.layout == "auto" else self.layout
        entries = [Entry(uri_of(rel), label_for(rel, layout)) for rel in images]
        return Listing(entries, ignored, dict(sorted(skipped.items())))


@dataclass(eq=False, repr=False)
class AtRoot:
    root: Path


@dataclass(eq=False, repr=False)
class AtUrl:
    url: str


def is_image_name(name: str) -> bool:
    # posixpath.basename and splitext, by hand: this runs once per file of every listing
    base = name[name.rfind("/") + 1 :]
    dot = base.rfind(".")
    return dot > 0 and base[0] != "." and base[dot:].lower() in IMAGE_EXTENSIONS


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
    # posixpath.basename(posixpath.dirname(relpath)), by hand: once per file of every listing
    cut = relpath.rfind("/")
    parent = relpath[:cut].rstrip("/") if cut > 0 else ""
    return parent[parent.rfind("/") + 1 :] or None


def utf8(name: str) -> bool:
    """False for a name whose bytes were not UTF-8 (Python keeps them as lone surrogates): it
    could be neither stored as text in the metadata DB nor reopened from there by lineage."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unsafe_member(name: str) -> bool:
    if name and name[0] != "/" and "\\" not in name and ".." not in name and name[1:2] != ":":
        return False  # the common case, decided without splitting the name
    parts = name.replace("\\", "/").split("/")
    return parts[0] == "" or ".." in parts or re.match(r"[A-Za-z]:", name) is not None


def _split_images(
    relpaths: Iterable[str], outside: str, url_uris: bool
) -> tuple[list[str], int, Counter[str]]:
    images: list[str] = []
    ignored = 0
    skipped: Counter[str] = Counter()
    for rel in relpaths:
        if not utf8(rel):
            skipped[BAD_NAME] += 1
        elif _unsafe_member(rel):
            skipped[outside] += 1
        elif (rel[:1] == "." or "/." in rel or "__MACOSX" in rel) and any(
            p.startswith(".") or p == "__MACOSX" for p in rel.split("/")
        ):  # (the test before ``and`` spares the split for the usual name)
            continue  # hidden files and macOS resource forks are not data
        elif not is_image_name(rel):
            ignored += 1
        elif url_uris and "::" in rel:
            skipped[CHAINED_NAME] += 1
        else:
            images.append(rel)
    distinct = sorted(set(images))
    if len(distinct) < len(images):  # an archive may hold a name twice; a uri names one file
        skipped[REPEATED_MEMBER] += len(images) - len(distinct)
    return distinct, ignored, skipped


def too_large(size: int, limit: int, *, declared: bool = False) -> str:
    note = " declared, not inflated" if declared else ""
    return f"file too large: {size} bytes{note} (limit {limit})"


_PIECE = 1 << 20


def read_capped(handle: IO[bytes], limit: int, expected: int | None = None) -> ReadResult:
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


def os_reason(exc: OSError) -> str:
    return SYMLINK_LOOP if exc.errno == errno.ELOOP else str(exc.strerror or exc)


def read_local(path: str | Path, limit: int) -> ReadResult:
    """A local file's bytes, only when it is a regular file: opening a FIFO blocks until a
    writer appears and a device never ends, so neither is ever opened for reading."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return f"{NOT_REGULAR}: {path}"
        if info.st_size > limit:
            return too_large(info.st_size, limit)
        # O_NONBLOCK: a file swapped for a FIFO since the stat still opens at once, and the
        # fstat refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb", buffering=0) as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return f"{NOT_REGULAR}: {path}"
            return read_capped(handle, limit, info.st_size)
    except OSError as exc:
        return f"unreadable: {os_reason(exc)}"


def one_line(exc: BaseException) -> str:
    """A library's exception as one line of a SourceError: a driver's message may span lines
    and repeat the URL it was given, password and all; a missing file's says only its path."""
    if isinstance(exc, FileNotFoundError):
        cause = exc.__cause__  # fsspec's HTTP client says "not found" of any failure
        if cause is None or isinstance(cause, FileNotFoundError) or not str(cause).strip():
            return "does not exist"
        exc = cause
    return redact(" ".join(str(exc).split()))[:300] or type(exc).__name__


def url_to_fs(url: str) -> tuple[Any, str]:
    """fsspec's filesystem and path for ``url``; ``s3+http(s)://host:port/bucket/key`` (the
    artifact store's form of an S3-compatible server) is ``s3://bucket/key`` at that server."""
    from kennel.storage.fsspec_store import split_endpoint

    target, endpoint = split_endpoint(url)  # StorageError: credentials in the URL
    options = {"endpoint_url": endpoint} if endpoint else {}
    fs, path = fsspec.core.url_to_fs(target, **options)
    return fs, str(path)


def read_uri(uri: str, limit: int = DEFAULT_MAX_BYTES) -> ReadResult:
    """The bytes behind a recorded uri (a local path, any fsspec URL or an ``s3+http(s)://``
    one), at most ``limit``."""
    if uri.startswith("file://"):
        return read_local(uri.removeprefix("file://"), limit)
    if "://" not in uri:
        return read_local(uri, limit)
    try:
        fs, path = url_to_fs(uri)
        with fs.open(path, "rb") as handle:
            size = getattr(handle, "size", None)
            if not isinstance(size, int):
                size = None
            elif size > limit:
                return too_large(size, limit)
            return read_capped(handle, limit, size)
    except Exception as exc:  # one item's failure is its reason, never the run's
        # a backend raises its own classes (botocore's NoCredentialsError is not an OSError;
        # ImportError: no such backend): whatever it is, this item is unreadable
        return f"unreadable: {type(exc).__name__}: {redact(str(exc))}"
