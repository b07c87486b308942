"""Small file-system helpers: atomic writes that never leave a half-written file behind, where a
page asked for by path may go, and a lock that says whether a process owns something (it dies
with the process)."""

from __future__ import annotations

import fcntl
import os
import uuid
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


def is_locked(path: Path) -> bool:
    """Whether another process holds ``try_lock``'s lock on ``path`` now."""
    if not path.exists():
        return False
    fd = try_lock(path)
    if fd is None:
        return True
    os.close(fd)
    return False


def page_target(
    path: Path, default_name: str, *, force: bool = False, option: str = "--out"
) -> Path:
    """Where a page asked for at ``path`` is written: inside it as ``default_name`` when it is
    a folder, else ``path`` itself. An existing file is replaced only when it is a page kennel
    wrote (``KENNEL_PAGE`` in its first kilobytes) or with ``force``: a report sent by mistake
    to a project's kennel.yaml, or as root to /etc/passwd, replaced it."""
    if path.is_dir():
        path = path / default_name
    if force or not (path.exists() or path.is_symlink()):
        return path
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        head = b""
    if path.is_file() and KENNEL_PAGE.encode() in head:
        return path
    raise ConfigError(
        f"{option} {path}: it exists and is not a page kennel wrote; give --force to replace "
        "it, or another path"
    )
