"""Reading only what changed: a local file whose stat (size, mtime, ctime, inode, device) is
the one it had when an earlier ingest read it still holds the bytes read then, the assumption
git's index and dvc's state database make. Such a file's sha256 is taken from that read
(``file_states`` in the metadata DB), and its item (measured when the bytes were first
accepted) from ``items``; every other file is read, hashed, decoded and checked as always.

A stat is trusted only when it says something: symlinks are always read (their target can
change under the same link), and so is a file changed less than ``RACY_NS`` before its stat
was taken, since a second change within the file system's timestamp resolution could leave
its stat as it was (git's "racily clean" entries). A file rewritten in place gets a new
mtime and ctime, one replaced by a rename a new inode: either is read again.

An unchanged file that the parent version holds already (same uri, content and label) is not
even recorded in the run (``held``): the version's manifest says what it holds, and a run's
records are the files it read or had to judge again.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable

from kennel.datasets.index import VersionIndex
from kennel.db.ingest import IngestStore
from kennel.ingest.sources import Entry
from kennel.ingest.validate import OK, FileResult, Limits

RACY_NS = 2_000_000_000  # coarser than any local file system's timestamps (FAT: 2 s)


def stat_key(path: str, now_ns: int) -> str | None:
    """The regular file's stat as a key; None for a symlink, a file that is not regular or
    cannot be stat'ed, or one changed within RACY_NS of ``now_ns``."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or max(st.st_mtime_ns, st.st_ctime_ns) > now_ns - RACY_NS:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"


def stat_keys(paths: Iterable[str]) -> dict[str, str]:
    """The key of each path that has one, all taken now (before any of them is read)."""
    now = time.time_ns()
    keys = {path: stat_key(path, now) for path in paths}
    return {path: key for path, key in keys.items() if key is not None}


def _within(limits: Limits, label: str | None, size: int, width: int, height: int) -> bool:
    """Whether a check would accept these bytes again under ``limits`` (which may have changed
    since they were read): else the file is read and checked, and rejected with the reason."""
    return (
        label is not None
        and (not limits.labels or label in limits.labels)
        and size <= limits.max_file_bytes
        and width * height <= limits.max_pixels
        and min(width, height) >= limits.min_side
    )


def reuse(
    store: IngestStore, pending: list[tuple[int, Entry]], limits: Limits
) -> tuple[list[FileResult], list[tuple[int, Entry]], dict[str, str]]:
    """Split ``pending`` local files into those unchanged since an earlier read (as accepted
    results, with no item: it is stored already) and those to read; and the stat keys taken,
    to record with what the reads find."""
    keys = stat_keys(entry.uri for _seq, entry in pending)
    states = store.file_states(list(keys))
    reused: list[FileResult] = []
    to_read: list[tuple[int, Entry]] = []
    for seq, entry in pending:
        key = keys.get(entry.uri)
        state = states.get(entry.uri) if key is not None else None
        if key is None or state is None or state[0] != key:
            to_read.append((seq, entry))
            continue
        _stat, sha256, width, height = state
        size = int(key.split(":", 1)[0])
        if not _within(limits, entry.label, size, width, height):
            to_read.append((seq, entry))
            continue
        reused.append(
            FileResult(seq, entry.uri, entry.label, OK, None, sha256, size, None, entry.attrs)
        )
    return reused, to_read, keys


def held(parent: VersionIndex, reused: list[FileResult]) -> tuple[list[FileResult], int]:
    """Those of ``reused`` that ``parent`` does not hold as (uri, sha256, label) already, and
    how many it does (each one a file "already present" that needs no record)."""
    labels = [parent.labels[code] for code in parent.label_codes.tolist()]
    rows = set(zip(parent.uri.to_pylist(), parent.sha256.to_pylist(), labels, strict=True))
    rest = [r for r in reused if (r.uri, r.sha256, r.label) not in rows]
    return rest, len(reused) - len(rest)
