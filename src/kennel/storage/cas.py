"""Content-addressed storage on any BlobStore: keys are sha256 digests, every read verified.

Two key layouts exist. A store made by this version keeps a blob at ``sha256/ab/<digest>``
(256 folders: on a local disk each new folder of the older layout cost a ``mkdir`` and its
metadata writes, the largest single cost of an ingest's write). A store that already held blobs
before the layout was recorded keeps the older ``sha256/ab/cd/<digest>`` for every write, so an
existing project stays as it is. The layout is recorded in the store itself (``sha256/LAYOUT``,
written with the first blob); reads look in the recorded layout first and then in the other, so
a blob is found whichever layout wrote it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from kennel.errors import IntegrityError, NotFoundError, UnsafePathError
from kennel.storage.base import BlobStore

_DIGEST = re.compile(r"^[0-9a-f]{64}\Z")
FLAT = "flat"  # sha256/ab/<digest>
NESTED = "nested"  # sha256/ab/cd/<digest>: every store written before the layout was recorded
LAYOUT_KEY = "sha256/LAYOUT"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_key(digest: str, layout: str = FLAT) -> str:
    """Where ``digest``'s blob lives in a store of ``layout``."""
    if not _DIGEST.match(digest):
        raise UnsafePathError(f"not a sha256 digest: {digest!r}")
    if layout == NESTED:
        return f"sha256/{digest[:2]}/{digest[2:4]}/{digest}"
    return f"sha256/{digest[:2]}/{digest}"


class ContentStore:
    """Stores each distinct byte string once, under its own sha256."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._layout: str | None = None  # the recorded layout, once read or written
        self._looked = False  # whether the marker was looked for (and missing) already

    def layout(self) -> str | None:
        """The store's recorded layout; None for a store that has not recorded one (yet)."""
        if self._layout is None and not self._looked:
            self._layout = self._read_layout()
            self._looked = True
        return self._layout

    def _read_layout(self) -> str | None:
        try:
            text = self.blobs.get(LAYOUT_KEY).decode("ascii", "replace").strip()
        except NotFoundError:
            return None
        return NESTED if text == NESTED else FLAT

    def _write_layout(self) -> str:
        """The layout new blobs go in, recorded on the first write: the layout of the blobs a
        store holds already (nested for one written before layouts were recorded; flat for
        one whose marker was lost), flat for a new one."""
        if self._layout is None:
            self._layout = self._read_layout()
        if self._layout is None:
            found = (key for key in self.blobs.list("sha256/") if key != LAYOUT_KEY)
            first = next(found, None)
            found_layout = FLAT if first is None or first.count("/") == 2 else NESTED
            self.blobs.put(LAYOUT_KEY, found_layout.encode() + b"\n")
            # a writer racing this one may have recorded its answer first: that one holds
            self._layout = self._read_layout() or found_layout
        return self._layout

    def _keys(self, digest: str) -> tuple[str, str]:
        """``digest``'s key in the recorded layout (flat when none is) and in the other."""
        first = self.layout() or FLAT
        return digest_key(digest, first), digest_key(digest, NESTED if first == FLAT else FLAT)

    def key(self, digest: str) -> str:
        """The key ``digest``'s blob is stored under (or would be, when it is written now)."""
        first, second = self._keys(digest)
        return second if not self.blobs.exists(first) and self.blobs.exists(second) else first

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` and return its digest; a given ``digest`` must match the bytes."""
        actual = sha256_hex(data)
        if digest is not None and digest != actual:
            raise IntegrityError(f"refusing to store bytes under {digest}: they hash to {actual}")
        self.blobs.put(digest_key(actual, self._write_layout()), data)
        return actual

    def put_many(
        self, datas: list[bytes], *, durable: bool = True, digests: Sequence[str] | None = None
    ) -> list[str]:
        """Store several byte strings in one durable batch (``durable=False``: durable once
        ``sync`` returns); returns their digests in order. ``digests``: the bytes' sha256,
        computed by the caller in this process already (not checked again)."""
        if digests is None:
            digests = [sha256_hex(data) for data in datas]
        elif len(digests) != len(datas):
            raise ValueError("put_many: one digest per byte string")
        if not datas:
            return []
        layout = self._write_layout()
        items = [(digest_key(d, layout), data) for d, data in zip(digests, datas, strict=True)]
        self.blobs.put_many(items, durable=durable)
        return list(digests)

    def sync(self) -> None:
        """Make every non-durable ``put_many`` so far durable (see ``BlobStore.sync``)."""
        self.blobs.sync()

    def get(self, digest: str) -> bytes:
        first, second = self._keys(digest)
        try:
            data = self.blobs.get(first)
        except NotFoundError:
            try:
                data = self.blobs.get(second)
            except NotFoundError:
                raise NotFoundError(f"artifact {digest} not found in {self.blobs.url}") from None
        actual = sha256_hex(data)
        if actual != digest:
            raise IntegrityError(
                f"artifact {digest} is corrupt in {self.blobs.url}: its bytes hash to {actual}"
            )
        return data

    def exists(self, digest: str) -> bool:
        first, second = self._keys(digest)
        return self.blobs.exists(first) or self.blobs.exists(second)
