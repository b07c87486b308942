"""Thumbnails of ingested images, made by the dashboard from the content store.

A request names an image only by its sha256, and only an image some ingest accepted (an item)
is drawn: no path ever comes from a request, and no other blob of the store (a bundle, a
manifest, the audit anchor) can be fetched through here. The bytes are read hash-verified,
size-limited, decoded by kennel's one safe decoder (which admits only the allowed image
formats), shrunk and re-encoded as JPEG: what the browser gets is always a small JPEG."""

from __future__ import annotations

import io
import re
import threading
from collections import OrderedDict

from kennel.db.ingest import IngestStore
from kennel.errors import NotFoundError
from kennel.imaging import ImageRejected, decode
from kennel.wiring import Workspace

DIGEST = re.compile(r"^[0-9a-f]{64}\Z")
SIDE = 160  # pixels on the longer side
MAX_FILE_BYTES = 32 * 2**20  # an image larger than this is not drawn (ingest admits 64 MB)
MAX_DECODE_BYTES = 256 * 2**20
MEDIA_TYPE = "image/jpeg"


class NotAnImage(ValueError):
    """The item's bytes cannot be drawn (too large, or refused by the decoder): a 415."""


class Thumbnails:
    """Small JPEGs of items by sha256; recently made ones are kept (content never changes)."""

    def __init__(self, ws: Workspace, *, side: int = SIDE, keep: int = 1024) -> None:
        self.ws = ws
        self.side = side
        self.keep = keep
        self._made: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._decoding = threading.BoundedSemaphore(4)  # a page of 48 images: 4 rasters at once

    def jpeg(self, sha256: str) -> bytes:
        if not DIGEST.match(sha256):
            raise NotFoundError("an image is named by the sha256 of its content")
        with self._lock:
            if sha256 in self._made:
                self._made.move_to_end(sha256)
                return self._made[sha256]
        item = IngestStore(self.ws.db).item(sha256)
        if item is None:
            raise NotFoundError(f"no ingested image has the content {sha256[:12]}...")
        if item.size > MAX_FILE_BYTES:
            raise NotAnImage(f"image {sha256[:12]} is {item.size} bytes: too large to preview")
        made = self._draw(self.ws.content.get(sha256))  # hash-verified
        with self._lock:
            self._made[sha256] = made
            while len(self._made) > self.keep:
                self._made.popitem(last=False)
        return made

    def _draw(self, data: bytes) -> bytes:
        limits = self.ws.project.config.data
        with self._decoding:
            try:
                decoded = decode(
                    data,
                    max_pixels=limits.max_pixels,
                    max_bytes=MAX_DECODE_BYTES,
                    min_side=1,
                    draft=(self.side, self.side),
                )
            except ImageRejected as exc:
                raise NotAnImage(f"this item cannot be drawn: {exc}") from exc
            image = decoded.image
            image.thumbnail((self.side, self.side))
            out = io.BytesIO()
            image.save(out, "JPEG", quality=82)
            return out.getvalue()
