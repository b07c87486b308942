"""The audit chain's anchor: each entry's sequence number and hash, written once to a store
that someone who can write the database cannot (the project's artifact store), right after
the entry's transaction commits (``kennel.db.audit``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Protocol

from kennel.errors import KennelError, StorageError

_ANCHORS = "audit/anchors"
_ANCHOR_NAME = re.compile(r"^[0-9]{12}\Z")


class AnchorStore(Protocol):
    """Write-once bytes under keys (a BlobStore): ``put`` never overwrites."""

    def put(self, key: str, data: bytes) -> bool: ...

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...


class AnchorConflict(StorageError):
    """An anchor's name holds another entry's hash: anchors of another audit log."""


class AnchorTaken(StorageError):
    """An anchor's name holds something that cannot be read as an anchor."""


class AuditAnchor:
    """The audit chain's entries as (sequence number, hash), one write-once record each, kept
    where someone who can write the database cannot (the artifact store)."""

    def __init__(self, store: AnchorStore, *, report: Callable[[str], None] | None = None) -> None:
        self.store = store
        # who is told, at once, of an entry that could not be anchored (the CLI prints it on
        # stderr); without one it is logged as an error
        self.report = report

    @staticmethod
    def name(seq: int) -> str:
        return f"{_ANCHORS}/{seq:012d}"

    def publish(self, entries: list[tuple[int, str]]) -> None:
        """Anchor each (seq, hash); raises AnchorConflict when an anchor that is there already
        (write-once) holds another hash, AnchorTaken when its name holds no anchor."""
        for seq, digest in entries:
            data = json.dumps({"seq": seq, "hash": digest}).encode()
            if self.store.put(self.name(seq), data):
                continue
            there = self.hash_of(seq)
            if not there:
                raise AnchorTaken(
                    f"{self.name(seq)} in the artifact store holds something that is not an anchor"
                )
            if there != digest:
                raise AnchorConflict(
                    f"the artifact store already holds an anchor of entry {seq} with another "
                    "hash: it holds the anchors of another audit log (a metadata database "
                    "made anew over an old artifact store?)"
                )

    def sequence_numbers(self) -> list[int]:
        names = (key.rsplit("/", 1)[-1] for key in self.store.list(_ANCHORS))
        return sorted(int(name) for name in names if _ANCHOR_NAME.match(name))

    def hash_of(self, seq: int) -> str:
        """The anchored hash of entry ``seq``; "" when the record cannot be read as one (so
        it matches nothing and verification names it)."""
        try:
            value = json.loads(self.store.get(self.name(seq)))["hash"]
        except (ValueError, KeyError, TypeError, OSError, KennelError):
            return ""
        return value if isinstance(value, str) else ""
