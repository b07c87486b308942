"""Content-store key layouts: a new store is flat (``sha256/ab/<digest>``); a store that held
blobs before layouts were recorded keeps ``sha256/ab/cd/<digest>``; every blob reads whichever
layout wrote it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kennel.errors import NotFoundError
from kennel.storage import BlobStore, ContentStore, open_blob_store, sha256_hex
from kennel.storage.cas import FLAT, LAYOUT_KEY, NESTED, digest_key
from kennel.storage.fsspec_store import FsspecBlobStore
from kennel.storage.local import LocalBlobStore


@pytest.fixture(params=["local", "fsspec-memory"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
    else:
        memory = FsspecBlobStore(f"memory://kennel-layout-{uuid.uuid4().hex}")
        yield memory
        if memory.fs.exists(memory.root):
            memory.fs.rm(memory.root, recursive=True)


def _keys(blobs: BlobStore) -> set[str]:
    return set(blobs.list("sha256/"))


def test_a_new_store_is_flat_and_says_so(blobs: BlobStore) -> None:
    cas = ContentStore(blobs)
    one, two = cas.put_many([b"one", b"two"])
    assert _keys(blobs) == {LAYOUT_KEY, f"sha256/{one[:2]}/{one}", f"sha256/{two[:2]}/{two}"}
    assert blobs.get(LAYOUT_KEY).strip() == FLAT.encode()
    fresh = ContentStore(blobs)  # another process opening the store later
    assert fresh.layout() == FLAT
    assert fresh.get(one) == b"one" and fresh.exists(two)
    assert fresh.key(one) == digest_key(one)


def test_an_existing_nested_store_keeps_its_layout(blobs: BlobStore) -> None:
    # what an earlier kennel wrote: nested keys, no layout recorded
    old = [b"photo-%d" % i for i in range(3)]
    for data in old:
        blobs.put(digest_key(sha256_hex(data), NESTED), data)
    cas = ContentStore(blobs)
    assert cas.layout() is None
    for data in old:  # read before anything is written
        assert cas.get(sha256_hex(data)) == data
        assert cas.exists(sha256_hex(data))
    new = cas.put(b"added after the upgrade")
    assert cas.layout() == NESTED
    assert blobs.get(LAYOUT_KEY).strip() == NESTED.encode()
    assert blobs.exists(digest_key(new, NESTED)) and not blobs.exists(digest_key(new, FLAT))
    assert cas.key(new) == digest_key(new, NESTED)
    again = ContentStore(blobs)
    assert [again.get(sha256_hex(d)) for d in old] == old
    assert again.get(new) == b"added after the upgrade"
    assert all(len(key.split("/")) == 4 for key in _keys(blobs) - {LAYOUT_KEY})


def test_a_blob_in_the_other_layout_is_still_found(blobs: BlobStore) -> None:
    cas = ContentStore(blobs)
    cas.put(b"first")  # the store is flat now
    stray = b"written by an older kennel into the same store"
    digest = sha256_hex(stray)
    blobs.put(digest_key(digest, NESTED), stray)
    assert ContentStore(blobs).get(digest) == stray
    assert ContentStore(blobs).exists(digest)
    assert ContentStore(blobs).key(digest) == digest_key(digest, NESTED)


def test_missing_blob_is_not_found_in_either_layout(blobs: BlobStore) -> None:
    cas = ContentStore(blobs)
    cas.put(b"something")
    missing = sha256_hex(b"never stored")
    assert not cas.exists(missing)
    with pytest.raises(NotFoundError, match="not found"):
        cas.get(missing)


def test_handles_opened_together_on_a_new_store_agree(tmp_path: Path) -> None:
    """Two workers open a fresh store before either writes: both write flat."""
    url = str(tmp_path / "shared")
    first, second = ContentStore(open_blob_store(url)), ContentStore(open_blob_store(url))
    assert first.layout() is None and second.layout() is None
    a = first.put(b"from the first worker")
    b = second.put(b"from the second worker")
    assert first.layout() == second.layout() == FLAT
    assert (Path(url) / digest_key(a)).is_file() and (Path(url) / digest_key(b)).is_file()


def test_a_store_whose_marker_lost_a_race_follows_the_recorded_one(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    blobs.put(LAYOUT_KEY, b"nested\n")  # recorded by another writer a moment ago
    cas = ContentStore(blobs)
    digest = cas.put(b"bytes")
    assert (tmp_path / "blobs" / digest_key(digest, NESTED)).is_file()


def test_a_flat_store_that_lost_its_marker_stays_flat(blobs: BlobStore) -> None:
    cas = ContentStore(blobs)
    one = cas.put(b"before the marker was removed")
    if isinstance(blobs, LocalBlobStore):  # removed by hand
        (blobs.root / LAYOUT_KEY).unlink()
    else:
        assert isinstance(blobs, FsspecBlobStore)
        blobs.fs.rm(f"{blobs.root}/{LAYOUT_KEY}")
    reopened = ContentStore(blobs)
    assert reopened.layout() is None
    two = reopened.put(b"after")
    assert reopened.layout() == FLAT and blobs.get(LAYOUT_KEY).strip() == FLAT.encode()
    assert _keys(blobs) == {LAYOUT_KEY, digest_key(one, FLAT), digest_key(two, FLAT)}
