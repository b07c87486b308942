"""A folder on any fsspec filesystem (``s3://bucket/prefix``, ``memory://lake``, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import fsspec

from kennel.errors import SourceError
from kennel.ingest.sources.base import (
    OUTSIDE_FOLDER,
    AtUrl,
    Entry,
    FileTreeSource,
    Listing,
    ReadResult,
    read_uri,
    redact,
)

# File systems whose folders exist apart from the files in them, so that a missing location can
# be told from an empty one. Elsewhere (s3, gcs, az, ...) a "folder" is only the start that
# names share, and a prefix nothing was written under, a mistyped one included, lists as empty.
_FOLDER_PROTOCOLS = frozenset({"file", "local", "memory"})


def _protocols(fs: Any) -> set[str]:
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


@dataclass(eq=False, repr=False)
class FsspecFolderSource(FileTreeSource, AtUrl):
    """A folder on any fsspec filesystem (s3://bucket/prefix, memory://lake, ...). A location
    that does not exist is a ``SourceError`` where folders exist (local, ``memory://``); on an
    object store it lists as empty, with a :attr:`Listing.note` saying it may be mistyped."""

    outside: ClassVar[str] = OUTSIDE_FOLDER
    url_uris: ClassVar[bool] = True
    fs: Any = field(init=False)  # the fsspec filesystem behind ``url``
    root: str = field(init=False)  # ``url``'s path on that filesystem

    def __post_init__(self) -> None:
        super().__post_init__()
        given, self.url = self.url, self.url.rstrip("/")
        try:
            self.fs, root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise SourceError(f"cannot open {redact(given)}: {exc}") from exc
        self.root = root.rstrip("/")

    def describe(self) -> str:
        return f"fsspec:{redact(self.url)} layout={self.layout}"

    def scan(self) -> Listing:
        folders = bool(_protocols(self.fs) & _FOLDER_PROTOCOLS)
        try:
            if folders and not self.fs.isdir(self.root):
                there = "is not a folder" if self.fs.exists(self.root) else "does not exist"
                raise SourceError(f"source {redact(self.url)} {there}")
            paths = self.fs.find(self.root)
        except OSError as exc:
            raise SourceError(f"cannot list {redact(self.url)}: {exc}") from exc
        if not paths and not folders:
            note = (
                f"nothing is stored under {redact(self.url)}: an object store has no folders, "
                "so a prefix that does not exist lists as empty too; check it is not mistyped"
            )
            return Listing([], 0, note=note)
        prefix = self.root.strip("/")
        rels = [p.strip("/")[len(prefix) :].lstrip("/") for p in paths]
        return self._listing(rels, lambda r: f"{self.url}/{r}")

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        max_bytes = self.max_bytes
        for entry in entries:
            yield entry, read_uri(entry.uri, max_bytes)
