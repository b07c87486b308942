"""Artifact storage: a byte-store interface, its backends, and content addressing on top."""

from __future__ import annotations

from kennel.storage.base import BlobStore, check_key
from kennel.storage.cas import ContentStore, digest_key, sha256_hex


def open_blob_store(url: str) -> BlobStore:
    """A BlobStore for a local folder path or any fsspec URL (backend imported lazily);
    ``s3+http://host:port/bucket/prefix`` is S3 on an S3-compatible server at host:port."""
    if "://" in url and not url.startswith("file://"):
        from kennel.storage.fsspec_store import FsspecBlobStore

        return FsspecBlobStore(url)
    from kennel.storage.local import LocalBlobStore

    return LocalBlobStore(url.removeprefix("file://"))


def open_content_store(url: str) -> ContentStore:
    return ContentStore(open_blob_store(url))


__all__ = [
    "BlobStore",
    "ContentStore",
    "check_key",
    "digest_key",
    "open_blob_store",
    "open_content_store",
    "sha256_hex",
]
