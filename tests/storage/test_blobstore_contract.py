"""One contract, every backend: local folder, fsspec on the local disk, fsspec in memory, and
S3 (s3fs against a real S3-protocol server on loopback)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kennel.errors import IntegrityError, NotFoundError, UnsafePathError
from kennel.storage import BlobStore, ContentStore, digest_key, open_blob_store, sha256_hex
from kennel.storage.fsspec_store import FsspecBlobStore
from kennel.storage.local import LocalBlobStore


@pytest.fixture(params=["local", "fsspec-file", "fsspec-memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
    elif request.param == "fsspec-file":
        yield FsspecBlobStore(f"file://{tmp_path / 'blobs'}")
    elif request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        yield FsspecBlobStore(f"s3://{bucket}/artifacts")
    else:
        memory = FsspecBlobStore(f"memory://kennel-test-{uuid.uuid4().hex}")
        yield memory
        if memory.fs.exists(memory.root):
            memory.fs.rm(memory.root, recursive=True)


def test_put_get_exists_list(store: BlobStore) -> None:
    assert not store.exists("a/b.bin")
    assert store.put("a/b.bin", b"hello") is True
    assert store.exists("a/b.bin")
    assert store.get("a/b.bin") == b"hello"
    store.put("a/c.bin", b"x")
    store.put("z.bin", b"y")
    assert sorted(store.list()) == ["a/b.bin", "a/c.bin", "z.bin"]
    assert sorted(store.list("a")) == ["a/b.bin", "a/c.bin"]


def test_never_overwrites(store: BlobStore) -> None:
    assert store.put("k", b"first") is True
    assert store.put("k", b"second") is False
    assert store.get("k") == b"first"


def test_missing_key_is_not_found(store: BlobStore) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        store.get("nope/missing")


@pytest.mark.parametrize(
    "key", ["../escape", "a/../../etc/passwd", "/abs/path", "a//b", "a/./b", "a\\b", "", "a/ b"]
)
def test_rejects_keys_that_escape(store: BlobStore, key: str) -> None:
    with pytest.raises(UnsafePathError):
        store.put(key, b"x")
    with pytest.raises(UnsafePathError):
        store.get(key)


def test_concurrent_puts_leave_one_whole_copy(store: BlobStore) -> None:
    payloads = [bytes([i]) * 100_000 for i in range(8)]
    results: list[bool] = []

    def put(data: bytes) -> None:
        results.append(store.put("race", data))

    threads = [threading.Thread(target=put, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("race") in payloads
    assert sorted(results) == [False] * 7 + [True]  # exactly one writer created the key
    assert not any(".tmp-" in k for k in store.list())


def test_content_store_detects_tampering(store: BlobStore, tmp_path: Path) -> None:
    cas = ContentStore(store)
    digest = cas.put(b"precious bytes")
    assert digest == sha256_hex(b"precious bytes")
    assert cas.get(digest) == b"precious bytes"
    assert cas.put(b"precious bytes") == digest  # idempotent
    # Corrupt the stored blob behind the store's back.
    key = digest_key(digest)
    if isinstance(store, LocalBlobStore):
        (store.root / key).write_bytes(b"evil bytes")
    else:
        assert isinstance(store, FsspecBlobStore)
        store.fs.pipe_file(f"{store.root}/{key}", b"evil bytes")
    with pytest.raises(IntegrityError, match="corrupt"):
        cas.get(digest)


def test_content_store_refuses_wrong_digest(store: BlobStore) -> None:
    with pytest.raises(IntegrityError):
        ContentStore(store).put(b"abc", digest=sha256_hex(b"abd"))
    with pytest.raises(UnsafePathError):
        ContentStore(store).get("../../etc/passwd")


def test_local_store_refuses_symlink_escape(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "blobs"
    root.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        LocalBlobStore(root).put("link/file", b"x")
    assert not (outside / "file").exists()


@pytest.mark.parametrize("planted", ["sha256", "sha256/ab", "sha256/ab/cd"])
def test_local_store_refuses_a_symlinked_folder_at_any_depth(tmp_path: Path, planted: str) -> None:
    """Folders the store makes are trusted; one already there is resolved first, so a link
    planted at any level of ``sha256/ab/cd`` cannot send a write outside the root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "blobs"
    (root / planted).parent.mkdir(parents=True)
    (root / planted).symlink_to(outside)
    store = LocalBlobStore(root)
    store.put("other/00/first", b"x")  # other folders: made, trusted, cached
    with pytest.raises(UnsafePathError):
        store.put_many([("sha256/ab/cd/file", b"x")], durable=False)
    assert list(outside.rglob("*")) == []
    assert store.get("other/00/first") == b"x"


def test_open_blob_store_picks_backend(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(str(tmp_path)), LocalBlobStore)
    assert isinstance(open_blob_store(f"file://{tmp_path}"), LocalBlobStore)
    assert isinstance(open_blob_store("memory://x"), FsspecBlobStore)


def test_check_answers_for_a_reachable_store(store: BlobStore) -> None:
    store.check()  # nothing raised, nothing written
    assert list(store.list()) == []


def test_local_exists_answers_as_a_full_resolve_does(tmp_path: Path) -> None:
    """``exists`` looks a key up with one lstat in a folder it resolved once; its answers (and
    refusals) are those of resolving the whole key each time."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    root = tmp_path / "blobs"
    store = LocalBlobStore(root)
    assert not store.exists("sha256/ab/none")  # no store yet: nothing is made by looking
    assert not root.exists()
    store.put("sha256/ab/real", b"x")
    (root / "sha256" / "ab" / "folder").mkdir()
    (root / "sha256" / "ab" / "inside").symlink_to(root / "sha256" / "ab" / "real")
    (root / "sha256" / "ab" / "dangling").symlink_to(root / "sha256" / "ab" / "gone")
    (root / "sha256" / "ab" / "escape").symlink_to(outside / "secret")
    (root / "sha256" / "cd").symlink_to(outside)  # a planted folder link
    answers = {
        "sha256/ab/real": True,
        "sha256/ab/inside": True,
        "sha256/ab/none": False,
        "sha256/ab/folder": False,
        "sha256/ab/dangling": False,
        "sha256/ab/real/under": False,
        "sha256/zz/none": False,
    }
    for key, expected in answers.items():
        assert store.exists(key) is expected, key
        assert LocalBlobStore(root)._path(key).is_file() is expected, key
    for key in ("sha256/ab/escape", "sha256/cd/secret"):
        with pytest.raises(UnsafePathError):
            store.exists(key)
    # a folder made after a look found none is found by the next look
    assert not store.exists("sha256/ef/later")
    store.put("sha256/ef/later", b"y")
    assert store.exists("sha256/ef/later") and LocalBlobStore(root).exists("sha256/ef/later")
