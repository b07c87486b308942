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

A stat is trusted only on a file system whose stats mean this: a local one (ext4, XFS, Btrfs,
tmpfs, ZFS, overlay and the like, read from ``/proc/self/mountinfo``). A read-only image
(squashfs, ISO 9660) or a FUSE, network or unknown one may report a ctime equal to the mtime
and inode numbers made up again on each mount, so another file could show the same stat: its
files are always read (and so is everything where the mount table cannot be read). And a state
is only good for the content store its bytes went to: each key names the store, so a project
with another store (or another project sharing the metadata DB) reads the files again, and a
reused file whose blob is no longer in the store (removed by hand) is read and stored again.

One change a stat cannot show: Linux updates a file's mtime when a clean page of it is first
written through a shared memory map, not on later writes to the page while it stays dirty (up
to about 30 s, until write-back). A file rewritten in place through ``mmap`` within that
window after an ingest read it keeps its stat, as it does for git and dvc.

An unchanged file that the parent version holds already (same uri, content and label) is not
even recorded in the run (``held``): the version's manifest says what it holds, and a run's
records are the files it read or had to judge again.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterable
from operator import itemgetter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kennel.datasets.index import VersionIndex
from kennel.db.ingest import IngestStore
from kennel.ingest.sources import Entry
from kennel.ingest.validate import OK, FileResult, Limits
from kennel.storage import ContentStore

RACY_NS = 2_000_000_000  # coarser than any local file system's timestamps (FAT: 2 s)
MOUNTS = "/proc/self/mountinfo"
# file systems whose ctime moves on every change and whose inode numbers last (st_dev may be
# an anonymous device, as the mount table also shows it)
TRUSTED = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "zfs", "f2fs", "jfs", "bcachefs", "overlay"}
)


def file_systems() -> dict[int, str]:
    """Each mounted device's file system type, from the mount table as it is now (empty where
    there is none). Read once per listing: a long-lived process sees mounts come and go."""
    kinds: dict[int, str] = {}
    try:
        with open(MOUNTS, encoding="utf-8", errors="replace") as table:
            for line in table:
                fields, _, rest = line.partition(" - ")
                parts = fields.split()
                if len(parts) < 3 or not rest or ":" not in parts[2]:
                    continue
                major, minor = parts[2].split(":", 1)
                if major.isdigit() and minor.isdigit():
                    kinds[os.makedev(int(major), int(minor))] = rest.split()[0]
    except OSError:
        return {}
    return kinds


def trusted_devices() -> set[int]:
    """The mounted devices whose stats can stand for the files' contents (see the module's
    text), from the mount table as it is now."""
    return {device for device, kind in file_systems().items() if kind in TRUSTED}


def scope_of(content: ContentStore) -> str:
    """The part of a key naming the content store a file's bytes went to (a digest of its
    location: a URL may carry a password)."""
    return hashlib.sha256(content.blobs.url.encode()).hexdigest()[:16]


def stat_keys(paths: Iterable[str], scope: str = "") -> dict[str, str]:
    """The stat key of each path that has one (for the content store ``scope``), all taken
    now, before any of them is read. None is given to a symlink, a file that is not regular or
    cannot be stat'ed, one changed within RACY_NS of now, or one on a file system whose stats
    are not trusted. One loop with its lookups hoisted: it runs once per file of a folder."""
    racy = time.time_ns() - RACY_NS
    devices = trusted_devices()
    suffix = f"@{scope}" if scope else ""
    lstat, regular = os.lstat, stat.S_ISREG
    keys: dict[str, str] = {}
    for path in paths:
        try:
            st = lstat(path)
        except OSError:
            continue
        if (
            not regular(st.st_mode)
            or st.st_mtime_ns > racy
            or st.st_ctime_ns > racy
            or st.st_dev not in devices
        ):
            continue
        times = f"{st.st_mtime_ns}:{st.st_ctime_ns}"
        keys[path] = f"{st.st_size}:{times}:{st.st_ino}:{st.st_dev}{suffix}"
    return keys


def _within(limits: Limits, files: pa.Table) -> pa.ChunkedArray:
    """Whether a check would accept each file's bytes again under ``limits`` (which may have
    changed since they were read): else the file is read and checked, and rejected with the
    reason. ``files`` has label, size, width and height columns; a null label is not."""
    label = files["label"]
    named = (
        pc.is_in(label, value_set=pa.array(limits.labels, pa.string()))
        if limits.labels
        else pc.is_valid(label)
    )
    width, height = files["width"], files["height"]
    return pc.and_(
        pc.and_(named, pc.less_equal(files["size"], limits.max_file_bytes)),
        pc.and_(
            pc.less_equal(pc.multiply(width, height), limits.max_pixels),
            pc.greater_equal(pc.min_element_wise(width, height), limits.min_side),
        ),
    )


# Files found unchanged since an earlier read are a table ("unchanged"): ``at`` (the file's
# place in the pending list), uri, label, sha256 and size. Columns, not a tuple per file: an
# append sorts out 100,000 unchanged files, and Python objects for each were a fifth of it.
Pending = list[tuple[int, Entry]]


def reuse(
    store: IngestStore, pending: Pending, limits: Limits, *, scope: str = ""
) -> tuple[pa.Table, Pending, dict[str, str]]:
    """Split ``pending`` local files into those unchanged since an earlier read for the
    content store ``scope`` (their bytes are stored already) and those to read; and the stat
    keys taken, to record with what the reads find."""
    uris = [entry.uri for _seq, entry in pending]
    keys = stat_keys(uris, scope)
    states = store.file_states(list(keys))
    files = pa.table(
        {
            "at": pa.array(np.arange(len(pending), dtype=np.int64)),
            "uri": pa.array(uris, pa.string()),
            "label": pa.array([entry.label for _seq, entry in pending], pa.string()),
            "key": pa.array(list(map(keys.get, uris)), pa.string()),
        }
    )
    recorded = pa.table(
        {
            "uri": pa.array(states.uri, pa.string()),
            "stat": pa.array(states.stat, pa.string()),
            "sha256": pa.array(states.sha256, pa.string()),
            "width": pa.array(states.width, pa.int64()),
            "height": pa.array(states.height, pa.int64()),
        }
    )
    both = files.join(recorded, "uri", join_type="inner")
    # a key starts with the file's size: "size:mtime:ctime:inode:device[@scope]"
    size = pc.list_element(pc.split_pattern(both["key"], ":", max_splits=1), 0)
    both = both.append_column("size", pc.cast(size, pa.int64()))
    same = pc.and_(pc.equal(both["key"], both["stat"]), _within(limits, both))
    unchanged = both.filter(same).select(["at", "uri", "label", "sha256", "size"])
    return unchanged, _others(pending, unchanged), keys


def _others(pending: Pending, unchanged: pa.Table) -> Pending:
    """The files of ``pending`` not in ``unchanged``, in their order."""
    read = np.ones(len(pending), dtype=bool)
    read[unchanged["at"].to_numpy()] = False
    return [pending[i] for i in np.flatnonzero(read).tolist()]


def held(parent: VersionIndex, unchanged: pa.Table) -> tuple[pa.Table, int]:
    """Those of ``unchanged`` that ``parent`` does not hold as (uri, sha256, label) already,
    and how many it does (each one a file "already present" that needs no record)."""
    label_of = pa.array(parent.labels, pa.string()).take(pa.array(parent.label_codes))
    holds = pa.table(
        {
            "uri": pa.array(parent.uri).cast(pa.string()),
            "sha256": pa.array(parent.sha256).cast(pa.string()),
            "label": label_of,
        }
    )
    rest = unchanged.join(holds, ["uri", "sha256", "label"], join_type="left anti")
    return rest, unchanged.num_rows - rest.num_rows


def results(unchanged: pa.Table, pending: Pending) -> list[FileResult]:
    """The unchanged files as accepted results, with no item (their item is stored already)."""
    found: list[FileResult] = []
    columns = (unchanged[name].to_pylist() for name in ("at", "sha256", "size"))
    for at, sha256, size in zip(*columns, strict=True):
        seq, entry = pending[at]
        found.append(
            FileResult(seq, entry.uri, entry.label, OK, None, sha256, size, None, entry.attrs)
        )
    return found


def stored(
    content: ContentStore, unchanged: pa.Table, to_read: Pending, pending: Pending
) -> tuple[pa.Table, Pending]:
    """``unchanged`` without the files whose blob is missing from ``content`` (removed by hand
    since): those join ``to_read``, to be read and stored again. Only for unchanged files that
    no parent version holds: a version's own blobs are taken as present everywhere."""
    there = [content.exists(sha256) for sha256 in unchanged["sha256"].to_pylist()]
    if all(there):
        return unchanged, to_read
    kept = unchanged.filter(pa.array(there, pa.bool_()))
    again = [
        pending[at] for at, ok in zip(unchanged["at"].to_pylist(), there, strict=True) if not ok
    ]
    return kept, sorted([*to_read, *again], key=itemgetter(0))
