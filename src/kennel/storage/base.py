"""The byte-store interface every artifact backend implements, and the key rules they share."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from kennel.errors import UnsafePathError

_SEGMENT = re.compile(r"^[A-Za-z0-9_.@=+-]+\Z")


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise UnsafePathError.

    A key is '/'-separated segments of [A-Za-z0-9_.@=+-]; no empty, '.' or '..' segment, no
    leading '/', no backslash. Backends still confine the resolved path to their root.
    """
    if not key or key.startswith("/") or "\\" in key:
        raise UnsafePathError(f"unsafe artifact key {key!r}: must be a relative '/' path")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _SEGMENT.match(segment):
            raise UnsafePathError(f"unsafe artifact key {key!r}: bad segment {segment!r}")
    return key


@runtime_checkable
class BlobStore(Protocol):
    """Immutable bytes under keys. ``put`` is atomic and never overwrites."""

    url: str

    def put(self, key: str, data: bytes) -> bool:
        """Store ``data`` under ``key`` atomically; False (and no write) when the key exists."""
        ...

    def put_many(self, items: list[tuple[str, bytes]], *, durable: bool = True) -> int:
        """``put`` each (key, data); durable when it returns, unless ``durable`` is False:
        then only once ``sync`` has returned. Returns how many were new."""
        ...

    def sync(self) -> None:
        """Make every ``put_many(..., durable=False)`` so far durable, by any process on this
        machine."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; NotFoundError when absent."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` (a folder-like prefix), in no particular order."""
        ...

    def check(self) -> None:
        """Raise StorageError, naming the store, unless it answers; writes nothing. Commands
        call it before their first write, so an unreachable store stops them at once."""
        ...
