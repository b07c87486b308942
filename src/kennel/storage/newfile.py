"""A new file, written whole before it has a name and never put over an existing one.

On Linux the bytes go into an anonymous file of the target's folder (``O_TMPFILE``), which is
linked under its name once written: one change to the folder per file. Elsewhere, or where the
file system has no anonymous files, a named temporary is written, hard-linked to the name and
removed: three changes to the folder (creating, linking, unlinking a name cost ~0.1 ms each
on this project's machines, a tenth of ingesting a photo). Either way a reader never sees a
file half-written under its name, ``link`` fails rather than replace a file that another
writer put there first, and a crash leaves no partial file under the name (an anonymous file
leaves nothing at all).
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid

TMP_PREFIX = ".tmp-"

# What open(O_TMPFILE) answers where the file system (or kernel) has no anonymous files.
_NO_ANONYMOUS = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL}
_anonymous = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
_root_fd: int | None = None


def write_new(path: str, data: bytes | memoryview, *, durable: bool) -> bool:
    """Write ``data`` as a new file ``path`` (its folder exists); False when a file is there
    already, which is left as it is. ``durable``: the bytes are on disk before the name is
    (the folder's entry is the caller's to sync). FileNotFoundError: the folder is gone."""
    global _anonymous
    folder = os.path.dirname(path)
    fd = _open_anonymous(folder)
    if fd is not None:
        try:
            # a failed write (a full disk, EIO) is the disk's answer: raised as it is, and
            # anonymous files stay on for the next blob
            _write(fd, data, durable)
            try:
                # link the open file by its /proc name, resolved in this process at the call
                os.link(f"proc/self/fd/{fd}", path, src_dir_fd=_root(), follow_symlinks=True)
                return True
            except FileExistsError:
                return False
            except OSError:
                if not os.path.isdir(folder):
                    raise FileNotFoundError(errno.ENOENT, "folder removed", folder) from None
                _anonymous = False  # /proc cannot link here (a sandbox): named temporaries
        finally:
            os.close(fd)
    tmp = os.path.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            _write(fd, data, durable)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails when the name exists: a racing writer is never overwritten
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _open_anonymous(folder: str) -> int | None:
    global _anonymous
    if not _anonymous:
        return None
    try:
        return os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o644)
    except OSError as exc:  # a removed folder (ENOENT) is raised as it is
        if exc.errno not in _NO_ANONYMOUS:
            raise
        _anonymous = False  # this file system has none: named temporaries from now on
        return None


def _root() -> int:
    """A descriptor of ``/``, kept: valid in forked children too, unlike one of /proc/self."""
    global _root_fd
    if _root_fd is None:
        _root_fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    return _root_fd


def _write(fd: int, data: bytes | memoryview, durable: bool) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if durable:
        os.fsync(fd)
