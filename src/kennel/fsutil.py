"""Small file-system helpers: atomic writes that never leave a half-written file behind, where a
page asked for by path may go, and a lock that says whether a process owns something (it dies
with the process)."""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import uuid
from html.parser import HTMLParser
from pathlib import Path

from kennel.errors import ConfigError

# In the head of every HTML page kennel writes where it is told (a report, a compliance page,
# a saliency map): ``page_target`` replaces such a page without asking, anything else only
# when forced.
KENNEL_PAGE = '<meta name="generator" content="kennel">'


def write_atomic(path: Path, data: bytes, *, fsync: bool = True, mode: int = 0o666) -> None:
    """Write ``data`` to ``path`` via a temp file and rename; readers see old or new, never half.
    ``mode``: the file's permissions before the umask (0o600: for its owner only, from the
    start, never readable by others for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # name the file asked for, not the temporary one next to it
        if exc.filename is None or os.fspath(exc.filename) != os.fspath(tmp):
            raise
        raise OSError(exc.errno, exc.strerror, os.fspath(path)) from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str, *, mode: int = 0o666) -> None:
    write_atomic(path, text.encode("utf-8"), mode=mode)


def try_lock(path: Path) -> int | None:
    """An exclusive lock (``flock``) on ``path``, created if missing, as an open descriptor
    that holds it until closed (or the process ends, ``kill -9`` included); None when another
    process holds it now."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def take_lock_file(path: Path, *, wait: bool) -> int | None:
    """``flock`` on the file at ``path``, for a lock whose holder removes its file before
    letting go (so that none is left behind): a lock taken on a file already removed or
    replaced holds nothing, and is taken again. With ``wait``, until it is had; else None
    when another process holds it now."""
    while True:
        if wait:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)  # type: ignore[arg-type]
        else:
            fd = try_lock(path)
        if fd is None:
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def is_locked(path: Path) -> bool:
    """Whether another process holds ``try_lock``'s lock on ``path`` now."""
    if not path.exists():
        return False
    fd = try_lock(path)
    if fd is None:
        return True
    os.close(fd)
    return False


def refuse_existing(path: Path, *, force: bool, option: str = "--out") -> None:
    """A file kennel would write at ``path`` (a clip) replaces one already there only with
    ``force``: a user's own video named by mistake was overwritten without a word."""
    if not force and (path.exists() or path.is_symlink()):
        raise ConfigError(
            f"{option} {path}: it exists; give --force to replace it, or another path"
        )


def outside_state(path: str | Path, state_dir: Path, option: str = "--out") -> None:
    """ConfigError when ``path`` lies in a project's state folder (its database, content
    store, runs and keys), which kennel alone writes: a bundle or page sent there by mistake,
    with --force, could replace the metadata database or land among the store's blobs."""
    where, state = Path(os.path.realpath(path)), Path(os.path.realpath(state_dir))
    if where == state or where.is_relative_to(state):
        raise ConfigError(
            f"{option} {path}: it is inside the project's state folder {state_dir}, which "
            "kennel alone writes; choose another place"
        )


def page_target(
    path: str | Path, default_name: str, *, force: bool = False, option: str = "--out"
) -> Path:
    """Where a page asked for at ``path`` is written: inside it as ``default_name`` when it is
    a folder, or a string that ends with a slash (a folder, made if missing), else ``path``
    itself. An existing file is replaced only when it is a page kennel wrote (``KENNEL_PAGE`` a
    tag of its head) or with ``force``: a report sent by mistake to a project's kennel.yaml, or
    as root to /etc/passwd, replaced it. Its folder is tried first, so a caller learns it
    cannot write there before it acts."""
    folder = isinstance(path, str) and path.endswith(("/", os.sep))  # Path drops the slash
    path = Path(os.path.abspath(path))  # "a/x/../r.html" is a/r.html: no stray a/x made
    if folder or path.is_dir():
        path = path / default_name
    if not force and (path.exists() or path.is_symlink()) and not _kennel_page(path):
        raise ConfigError(
            f"{option} {path}: it exists and is not a page kennel wrote; give --force to "
            "replace it, or another path"
        )
    _writable(path)  # before the caller acts on anything (a monitor's alerts)
    return path


class _Head(HTMLParser):
    """Finds ``KENNEL_PAGE`` as a tag of a document's head: in a comment, a script or the
    body it is only text."""

    def __init__(self) -> None:
        super().__init__()
        self.marked = self.ended = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.ended = True
        elif tag == "meta" and not self.ended:
            found = dict(attrs)
            if found.get("name") == "generator" and found.get("content") == "kennel":
                self.marked = True

    def handle_endtag(self, tag: str) -> None:
        self.ended = self.ended or tag == "head"


def _kennel_page(path: Path) -> bool:
    """Whether ``path`` is a file that kennel wrote as a page: an HTML document whose head
    holds ``KENNEL_PAGE`` as a tag (a page that merely quotes it is not one)."""
    try:  # without blocking: a FIFO with no writer would hold the open (or read) forever
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO, a device: no page of ours
            return False
        start = handle.read(4096)
    if not start.lstrip().lower().startswith(b"<!doctype html"):
        return False
    head = _Head()
    head.feed(start.decode("utf-8", "replace"))
    return head.marked


def _writable(path: Path) -> None:
    """Make ``path``'s folder if needed and prove a file can be created there, or the OSError
    that says why, naming ``path`` (not the probe): what writing it would raise, said now."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, probe = tempfile.mkstemp(prefix=".kennel-probe-", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, os.fspath(path)) from exc
    os.close(fd)
    os.unlink(probe)
