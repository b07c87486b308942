"""A tar archive, compressed or not (local or any fsspec URL), streamed in order."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import fsspec

from kennel.display import redact
from kennel.errors import SourceError
from kennel.ingest.sources.base import (
    NOT_REGULAR,
    AtUrl,
    Entry,
    FileTreeSource,
    Listing,
    ReadResult,
    one_line,
    read_capped,
    too_large,
)


@dataclass(eq=False, repr=False)
class TarSource(FileTreeSource, AtUrl):
    """A .tar/.tar.gz/.tgz/.tar.bz2/.tar.xz archive, streamed in order (no random access)."""

    url_uris: ClassVar[bool] = True

    def describe(self) -> str:
        return f"tar:{redact(self.url)} layout={self.layout}"

    def _members(self) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
        try:
            with (
                fsspec.open(self.url, "rb") as raw,
                tarfile.open(fileobj=raw, mode="r|*") as archive,
            ):
                for member in archive:
                    yield archive, member
        except Exception as exc:  # a driver's own errors too (botocore's, ftplib's)
            why = one_line(exc)
            if why == "empty file" and self._compressed_size():
                why = "it decompresses to nothing (an empty archive)"  # the file is not empty
            raise SourceError(f"cannot read tar archive {redact(self.url)}: {why}") from exc

    def _compressed_size(self) -> int:
        """The archive file's own size (0 when it cannot be told)."""
        try:
            fs, path = fsspec.core.url_to_fs(self.url)
            return int(fs.size(path) or 0)
        except Exception:  # only a better message was at stake
            return 0

    def scan(self) -> Listing:
        names: list[str] = []
        special = 0
        for _archive, member in self._members():
            if member.isfile():
                names.append(member.name)
            elif not member.isdir():
                special += 1  # links, FIFOs, devices: never extracted
        return self._listing(names, lambda r: f"tar://{r}::{self.url}", **{NOT_REGULAR: special})

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        """In archive order, not the given one: a stream has no random access, and holding every
        member until the end would hold the whole dataset in memory."""
        max_bytes = self.max_bytes
        # up to the first ``::``: no member name holds one, the archive's URL may
        wanted = {e.uri[len("tar://") : e.uri.index("::")]: e for e in entries}
        for archive, member in self._members():
            entry = wanted.pop(member.name, None) if member.isfile() else None
            if entry is None:
                continue
            if member.size > max_bytes:
                yield entry, too_large(member.size, max_bytes, declared=True)
                continue
            handle = archive.extractfile(member)
            if handle is None:
                yield entry, "unreadable archive member"
            else:
                yield entry, read_capped(handle, max_bytes, member.size)
        for entry in wanted.values():
            yield entry, "archive member disappeared"
