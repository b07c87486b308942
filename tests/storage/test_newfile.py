"""A blob's file appears whole under its name or not at all, and never replaces one that is
there: an anonymous file linked when written (Linux), or a named temporary linked then removed
(elsewhere, or a file system without anonymous files); in a forked worker as in its driver."""

from __future__ import annotations

import errno
import multiprocessing
import os
import sys
from pathlib import Path

import pytest

from kennel.storage import newfile


@pytest.fixture(params=["anonymous", "named"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "named":
        monkeypatch.setattr(newfile, "_anonymous", False)
    return str(request.param)


def test_a_new_file_appears_whole_and_never_replaces_one(
    way: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []
    write = newfile._write

    def watched(fd: int, data: bytes | memoryview, durable: bool) -> None:
        seen.append(sorted(os.listdir(tmp_path)))  # what a reader finds mid-write
        write(fd, data, durable)

    monkeypatch.setattr(newfile, "_write", watched)
    target = str(tmp_path / "blob")
    assert newfile.write_new(target, b"first" * 1000, durable=True)
    assert not newfile.write_new(target, b"second", durable=False)
    assert Path(target).read_bytes() == b"first" * 1000
    assert os.listdir(tmp_path) == ["blob"]  # no temporary left behind
    # mid-write the name is not there yet: nothing at all, or only a temporary's name
    assert "blob" not in seen[0]
    if way == "anonymous" and sys.platform.startswith("linux"):
        assert seen[0] == [] and newfile._anonymous  # Linux takes the one-entry way
    else:
        assert [n for n in seen[0] if n.startswith(newfile.TMP_PREFIX)]


def test_a_removed_folder_is_named(way: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        newfile.write_new(str(tmp_path / "gone" / "blob"), b"x", durable=False)


def _child(target: str) -> None:
    sys.exit(0 if newfile.write_new(target, b"from the child", durable=False) else 3)


@pytest.mark.skipif(sys.platform != "linux", reason="fork is Linux's start method here")
def test_a_forked_worker_links_its_own_file(tmp_path: Path) -> None:
    newfile.write_new(str(tmp_path / "parent"), b"from the parent", durable=False)  # fd kept
    child = multiprocessing.get_context("fork").Process(target=_child, args=(str(tmp_path / "c"),))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert (tmp_path / "c").read_bytes() == b"from the child"
    assert (tmp_path / "parent").read_bytes() == b"from the parent"


def test_a_failed_write_is_raised_once_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk is the disk's answer, not a sign that anonymous files do not work here:
    raised as it is, with nothing left under the name, and the next blob still anonymous."""
    calls: list[int] = []

    def full(fd: int, data: bytes | memoryview, durable: bool) -> None:
        calls.append(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(newfile, "_write", full)
    with pytest.raises(OSError) as raised:
        newfile.write_new(str(tmp_path / "blob"), b"x" * 100, durable=True)
    assert raised.value.errno == errno.ENOSPC and len(calls) == 1  # not written twice
    assert os.listdir(tmp_path) == []
    if sys.platform.startswith("linux"):
        assert newfile._anonymous
