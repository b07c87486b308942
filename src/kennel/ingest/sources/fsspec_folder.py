"""A folder on any fsspec filesystem (``s3://bucket/prefix``, ``memory://lake``, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec

from kennel.errors import SourceError
from kennel.ingest.sources.base import (
    AtUrl,
    Entry,
    FileTreeSource,
    Listing,
    ReadResult,
    read_uri,
    redact,
)


@dataclass(eq=False, repr=False)
class FsspecFolderSource(FileTreeSource, AtUrl):
    """A folder on any fsspec filesystem (s3://bucket/prefix, memory://lake, ...)."""

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
        try:
            paths = self.fs.find(self.root)
        except OSError as exc:
            raise SourceError(f"cannot list {redact(self.url)}: {exc}") from exc
        prefix = self.root.strip("/")
        rels = [p.strip("/")[len(prefix) :].lstrip("/") for p in paths]
        return self._listing(rels, lambda r: f"{self.url}/{r}")

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        max_bytes = self.max_bytes
        for entry in entries:
            yield entry, read_uri(entry.uri, max_bytes)
