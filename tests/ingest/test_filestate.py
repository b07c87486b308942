"""A folder ingested again reads only the files whose stat changed since an earlier ingest read
them (kennel.ingest.filestate), and gives the version a full read would."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from kennel.db.schema import IngestRunRow
from kennel.errors import SourceError, StateError
from kennel.ingest import filestate
from kennel.ingest.run import IngestReport
from kennel.storage import sha256_hex
from kennel.wiring import Workspace
from tests.conftest import make_project


def _jpeg(seed: int, tag: int) -> bytes:
    """A 64 px JPEG with a fixed-length comment naming ``tag``: two tags, same size, same
    pixels, different bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    data, text = out.getvalue(), f"tag-{tag:06d}".encode()
    return data[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + data[2:]


def _lake(root: Path, count: int) -> Path:
    for i in range(count):
        folder = root / ("cat" if i % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:03d}.jpg").write_bytes(_jpeg(i, 0))
    return root


def _ingest(ws: Workspace, lake: Path) -> IngestReport:
    return ws.ingestor(1).run(ws.source(str(lake), layout="imagefolder"), "pets")


@pytest.fixture
def opened() -> Iterator[Callable[..., Workspace]]:
    """Opens workspaces on new projects (``make_project``'s arguments); all closed after."""
    spaces: list[Workspace] = []

    def open_one(*args: Any, **data: Any) -> Workspace:
        spaces.append(Workspace(make_project(*args, **data)))
        return spaces[-1]

    yield open_one
    for ws in spaces:
        ws.close()


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files count as settled at once (else a test waits RACY_NS after writing them)."""
    monkeypatch.setattr(filestate, "RACY_NS", 0)


def test_unchanged_files_are_not_read_and_the_version_is_the_full_reads(
    tmp_path: Path, settled: None, opened: Callable[..., Workspace], metadata_url: str
) -> None:
    lake = _lake(tmp_path / "lake", 12)
    store = {"store": {"metadata_url": metadata_url}}
    ws = opened(tmp_path / "proj", store, workers=1)
    first = _ingest(ws, lake)
    assert (first.processed, first.reused) == (12, 0)
    (lake / "cat" / "100.jpg").write_bytes(_jpeg(100, 0))
    second = _ingest(ws, lake)
    assert (second.processed, second.reused, second.added) == (1, 12, 1)
    # the same folder read in full by a project that never saw it: the same version
    fresh = opened(tmp_path / "fresh", workers=1, max_file_bytes=200_000)
    full = _ingest(fresh, lake)
    assert (full.processed, full.reused) == (13, 0)
    assert second.version.id == full.version.id
    assert second.version.manifest_sha256 == full.version.manifest_sha256
    again = _ingest(ws, lake)  # nothing changed: nothing read, the same version
    assert (again.processed, again.reused, again.created) == (0, 13, False)
    assert (again.already_present, again.added) == (13, 0)
    # files the parent holds unchanged are not recorded again: only what was read or judged
    assert ws.ingestor(1).store.count(again.run_id, "ok") == 0
    assert ws.ingestor(1).store.count(second.run_id, "ok") == 1
    assert again.version.id == second.version.id


def test_a_file_rewritten_in_place_with_the_same_size_is_read_again(
    tmp_path: Path, settled: None, opened: Callable[..., Workspace]
) -> None:
    lake = _lake(tmp_path / "lake", 6)
    ws = opened(tmp_path / "proj", workers=1)
    _ingest(ws, lake)
    path = lake / "dog" / "002.jpg"
    old, new = path.read_bytes(), _jpeg(2, 1)
    assert len(old) == len(new) and old != new
    before = os.stat(path)
    with open(path, "r+b") as handle:  # the same inode, the same size, new bytes
        handle.write(new)
    # even with its old mtime put back, the change of ctime shows
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    report = _ingest(ws, lake)
    assert (report.processed, report.reused) == (1, 5)
    # the uri holds the new bytes now: they stand in the place of the parent's row for it
    rows = {r.key for r in ws.catalog.rows(report.version)}
    assert (str(path), sha256_hex(new)) in rows and (str(path), sha256_hex(old)) not in rows
    assert (report.added, report.replaced, report.created) == (1, 1, True)
    assert len(rows) == 6 and report.version.summary["replaced_sample"] == [str(path)]


def test_a_rewrite_is_what_a_fresh_ingest_of_the_folder_gives(
    tmp_path: Path, settled: None, opened: Callable[..., Workspace]
) -> None:
    """A file rewritten to the bytes of another file keeps its row (a copy: one exact-duplicate
    group), and one rewritten to bytes that are refused loses it: each uri is what it holds
    now, as in a fresh ingest of the folder."""
    lake = _lake(tmp_path / "lake", 8)
    ws = opened(tmp_path / "proj", workers=1, max_file_bytes=200_000)
    _ingest(ws, lake)
    (lake / "cat" / "001.jpg").write_bytes((lake / "cat" / "003.jpg").read_bytes())
    (lake / "dog" / "002.jpg").write_bytes(_jpeg(2, 0)[:300])  # cut short: quarantined
    (lake / "dog" / "004.jpg").write_bytes(b"x" * 300_000)  # over max_file_bytes: never hashed
    report = _ingest(ws, lake)
    rows = {r.uri: r for r in ws.catalog.rows(report.version)}
    assert (report.replaced, report.withdrawn, report.exact_duplicate_groups) == (1, 2, 1)
    assert len(rows) == 6 and report.version.summary["withdrawn_sample"] == [
        str(lake / "dog" / "002.jpg"),
        str(lake / "dog" / "004.jpg"),
    ]
    assert str(lake / "dog" / "002.jpg") not in rows and str(lake / "dog" / "004.jpg") not in rows
    copy, original = rows[str(lake / "cat" / "001.jpg")], rows[str(lake / "cat" / "003.jpg")]
    assert copy.sha256 == original.sha256 and copy.split == original.split  # never straddles
    fresh = opened(tmp_path / "fresh", workers=1)
    again = _ingest(fresh, lake)
    assert {(r.uri, r.sha256) for r in fresh.catalog.rows(again.version)} == {
        (u, r.sha256) for u, r in rows.items()
    }


def test_swapped_contents_keep_their_splits(
    tmp_path: Path, settled: None, opened: Callable[..., Workspace]
) -> None:
    """Two files that swap their bytes, and a new one beside them: each content stays in the
    split it was in (identical pictures never move, and a new one cannot take its place)."""
    lake = _lake(tmp_path / "lake", 40)
    ws = opened(tmp_path / "proj", workers=1)
    first = _ingest(ws, lake)
    split_of = {r.sha256: r.split for r in ws.catalog.rows(first.version)}
    cats = sorted(r for r in ws.catalog.rows(first.version) if r.label == "cat")
    test, train = (next(r for r in cats if r.split == s) for s in ("test", "train"))
    Path(test.uri).write_bytes(ws.content.get(train.sha256))
    Path(train.uri).write_bytes(ws.content.get(test.sha256))
    (lake / "cat" / "new.jpg").write_bytes(_jpeg(99, 0))
    report = _ingest(ws, lake)
    rows = {r.sha256: r for r in ws.catalog.rows(report.version)}
    assert report.replaced == 2 and len(rows) == 41
    assert all(rows[sha].split == split for sha, split in split_of.items())
    assert (rows[test.sha256].uri, rows[train.sha256].uri) == (train.uri, test.uri)


def test_a_file_replaced_by_a_rename_is_read_again(
    tmp_path: Path, settled: None, opened: Callable[..., Workspace]
) -> None:
    lake = _lake(tmp_path / "lake", 4)
    ws = opened(tmp_path / "proj", workers=1)
    _ingest(ws, lake)
    path = lake / "cat" / "001.jpg"
    spare = tmp_path / "spare.jpg"
    spare.write_bytes(_jpeg(1, 7))
    os.replace(spare, path)
    report = _ingest(ws, lake)
    assert (report.processed, report.reused) == (1, 3)


def test_files_changed_just_before_the_stat_and_symlinks_are_read(
    tmp_path: Path, opened: Callable[..., Workspace]
) -> None:
    lake = _lake(tmp_path / "lake", 4)
    (lake / "cat" / "link.jpg").symlink_to(lake / "cat" / "001.jpg")
    ws = opened(tmp_path / "proj", workers=1)
    _ingest(ws, lake)
    report = _ingest(ws, lake)  # written within RACY_NS of either stat: not trusted
    assert (report.processed, report.reused) == (5, 0)
    keys = filestate.stat_keys([str(lake / "cat" / "link.jpg")])
    assert keys == {}


def test_a_file_the_limits_now_refuse_is_read_quarantined_and_withdrawn(
    tmp_path: Path, settled: None, opened: Callable[..., Workspace]
) -> None:
    """Files the rules refuse now (a larger minimum side) leave the new version, as a fresh
    ingest under those rules would leave them out: their bytes are the parent's, yet the
    report said "unchanged" and kept them. All of them refused: no version at all."""
    lake = _lake(tmp_path / "lake", 4)
    big = np.random.default_rng(9).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    Image.fromarray(big).save(lake / "cat" / "big.png")
    first = _ingest(opened(tmp_path / "proj", workers=1), lake)
    stricter = opened(tmp_path / "proj", workers=1, min_side=100)
    report = _ingest(stricter, lake)
    assert (report.processed, report.reused, report.quarantined) == (4, 1, {"too small": 4})
    assert (report.created, report.withdrawn, report.replaced) == (True, 4, 0)
    assert [r.uri for r in stricter.catalog.rows(report.version)] == [str(lake / "cat" / "big.png")]
    assert first.version.n_rows == 5  # the parent is as it was
    strictest = opened(tmp_path / "proj", workers=1, min_side=200)
    with pytest.raises(SourceError, match="quarantined"):
        _ingest(strictest, lake)


def test_a_state_is_only_good_for_the_content_store_its_bytes_went_to(
    tmp_path: Path, settled: None, opened: Callable[..., Workspace], metadata_url: str
) -> None:
    """Two projects sharing one metadata DB, each with its own content store: the second
    reads every file (its store holds none of them); and a blob removed by hand from a
    store is read and stored again rather than versioned missing."""
    lake = _lake(tmp_path / "lake", 6)
    shared = {"store": {"metadata_url": metadata_url}}
    one = opened(tmp_path / "one", shared, workers=1)
    assert _ingest(one, lake).processed == 6
    # a blob removed from the store: that file is read again and its bytes stored again
    gone = sha256_hex((lake / "cat" / "001.jpg").read_bytes())
    blob = one.content.blobs.root / one.content.key(gone)  # type: ignore[attr-defined]
    blob.unlink()
    again = one.ingestor(1).run(one.source(str(lake), layout="imagefolder"), "pets-again")
    assert (again.processed, again.reused) == (1, 5)
    assert one.content.get(gone) == (lake / "cat" / "001.jpg").read_bytes()
    # another project on the same metadata DB, with a store of its own, reads every file
    two = opened(tmp_path / "two", shared, workers=1)
    other = two.ingestor(1).run(two.source(str(lake), layout="imagefolder"), "pets-two")
    assert (other.processed, other.reused) == (6, 0)
    assert all(two.content.get(r.sha256) for r in two.catalog.rows(other.version))


def _mounts(path: Path, device: int, kind: str) -> Path:
    """A mount table naming ``device``'s file system ``kind``."""
    major, minor = os.major(device), os.minor(device)
    path.write_text(f"36 35 {major}:{minor} / /data rw,relatime shared:1 - {kind} /dev/x rw\n")
    return path


@pytest.mark.parametrize(("kind", "reused"), [("ext4", 4), ("squashfs", 0), ("fuse.sshfs", 0)])
def test_stats_are_trusted_only_on_local_file_systems(
    tmp_path: Path,
    settled: None,
    opened: Callable[..., Workspace],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    reused: int,
) -> None:
    # a squashfs image or a FUSE mount may report ctime = mtime and inode numbers that repeat
    # on each mount: another file could show an earlier one's stat, so their files are read
    lake = _lake(tmp_path / "lake", 4)
    table = _mounts(tmp_path / "mountinfo", os.stat(lake / "cat" / "001.jpg").st_dev, kind)
    monkeypatch.setattr(filestate, "MOUNTS", str(table))
    ws = opened(tmp_path / "proj", workers=1)
    _ingest(ws, lake)
    report = _ingest(ws, lake)
    assert (report.processed, report.reused) == (4 - reused, reused)


def test_without_a_mount_table_every_file_is_read(
    tmp_path: Path, settled: None, opened: Callable[..., Workspace], monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = _lake(tmp_path / "lake", 4)
    monkeypatch.setattr(filestate, "MOUNTS", str(tmp_path / "no-such-table"))
    ws = opened(tmp_path / "proj", workers=1)
    _ingest(ws, lake)
    assert _ingest(ws, lake).processed == 4
    assert os.stat(lake).st_dev not in filestate.trusted_devices()


def test_a_pool_starts_only_for_files_that_are_read(
    tmp_path: Path, settled: None, opened: Callable[..., Workspace], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two workers, a folder of INLINE_BELOW + 10 files starts a process pool the first
    time (while its states are looked up); ingested again unchanged, or with a few files more,
    it reads too little for one and starts none (it once did, and waited for its workers)."""
    from kennel.ingest import engines

    started: list[int] = []
    real = engines.LocalEngine._started

    def counted(self: engines.LocalEngine, target: engines.Target) -> Any:
        if self._pool is None:
            started.append(os.getpid())
        return real(self, target)

    monkeypatch.setattr(engines.LocalEngine, "_started", counted)
    lake = _lake(tmp_path / "lake", engines.INLINE_BELOW + 10)
    ws = opened(tmp_path / "proj")

    def ingest() -> IngestReport:
        return ws.ingestor(2).run(ws.source(str(lake), layout="imagefolder"), "pets")

    assert ingest().processed == engines.INLINE_BELOW + 10 and len(started) == 1
    assert ingest().processed == 0 and len(started) == 1
    (lake / "cat" / "new.jpg").write_bytes(_jpeg(10_000, 0))
    again = ingest()
    assert (again.processed, again.added) == (1, 1) and len(started) == 1


def test_a_label_the_rules_no_longer_take_is_withdrawn_not_called_rewritten(
    tmp_path: Path, settled: None, opened: Callable[..., Workspace]
) -> None:
    lake = _lake(tmp_path / "lake", 6)
    _ingest(opened(tmp_path / "proj", workers=1), lake)
    cats_only = opened(tmp_path / "proj", workers=1, labels=["cat"])
    report = _ingest(cats_only, lake)
    dogs = sorted(str(p) for p in (lake / "dog").iterdir())
    assert (report.replaced, report.withdrawn, sum(report.quarantined.values())) == (0, 3, 3)
    assert report.version.summary["withdrawn_sample"] == dogs
    assert {r.label for r in cats_only.catalog.rows(report.version)} == {"cat"}
    # the dogs let in again make v1's content: said, not "unchanged" while the newest (v2,
    # what `-d pets` trains on) still lacks them
    both = opened(tmp_path / "proj", workers=1, labels=["cat", "dog"])
    with pytest.raises(StateError, match=r"make pets@\w+ \(v1\) again, an older version of"):
        _ingest(both, lake)
    assert both.catalog.latest("pets").seq == 2
    with pytest.raises(StateError, match=r"\(v1\) again"):  # its run closed: said again
        _ingest(both, lake)
    with both.db.session() as s:
        statuses = list(s.scalars(select(IngestRunRow.status).order_by(IngestRunRow.started_at)))
    assert statuses == ["done", "done", "failed", "failed"]
