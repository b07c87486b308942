"""Content-addressed storage on any BlobStore: keys are sha256 digests, every read verified."""

from __future__ import annotations

import hashlib
import re

from kennel.errors import IntegrityError, UnsafePathError
from kennel.storage.base import BlobStore

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_key(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise UnsafePathError(f"not a sha256 digest: {digest!r}")
    return f"sha256/{digest[:2]}/{digest[2:4]}/{digest}"


class ContentStore:
    """Stores each distinct byte string once, under its own sha256."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` and return its digest; a given ``digest`` must match the bytes."""
        actual = sha256_hex(data)
        if digest is not None and digest != actual:
            raise IntegrityError(f"refusing to store bytes under {digest}: they hash to {actual}")
        self.blobs.put(digest_key(actual), data)
        return actual

    def put_many(self, datas: list[bytes], *, durable: bool = True) -> list[str]:
        """Store several byte strings in one durable batch (``durable=False``: durable once
        ``sync`` returns); returns their digests in order."""
        digests = [sha256_hex(data) for data in datas]
        items = [(digest_key(d), data) for d, data in zip(digests, datas, strict=True)]
        self.blobs.put_many(items, durable=durable)
        return digests

    def sync(self) -> None:
        """Make every non-durable ``put_many`` so far durable (see ``BlobStore.sync``)."""
        self.blobs.sync()

    def get(self, digest: str) -> bytes:
        data = self.blobs.get(digest_key(digest))
        actual = sha256_hex(data)
        if actual != digest:
            raise IntegrityError(
                f"artifact {digest} is corrupt in {self.blobs.url}: its bytes hash to {actual}"
            )
        return data

    def exists(self, digest: str) -> bool:
        return self.blobs.exists(digest_key(digest))
