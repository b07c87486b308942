"""Small file-system helpers: atomic writes that never leave a half-written file behind."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


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
