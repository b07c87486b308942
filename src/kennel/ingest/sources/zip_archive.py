"""A .zip archive (local or any fsspec URL), read member by member without extracting."""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import ClassVar

import fsspec

from kennel.display import redact
from kennel.errors import SourceError
from kennel.ingest.sources.base import (
    AtUrl,
    Entry,
    FileTreeSource,
    Listing,
    ReadResult,
    one_line,
    read_capped,
    too_large,
)

_ZIP_ERRORS = (
    OSError,
    KeyError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,  # a compression method zipfile lacks
    RuntimeError,  # an encrypted member
)


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> ReadResult:
    """Refused unread when the declared size is over ``limit``; cut off at ``limit + 1`` bytes
    while inflating whatever the header says."""
    try:
        if info.file_size > limit:
            return too_large(info.file_size, limit, declared=True)
        with archive.open(info) as handle:
            return read_capped(handle, limit, info.file_size)
    except _ZIP_ERRORS as exc:
        return f"unreadable archive member: {exc}"


@dataclass(eq=False, repr=False)
class ZipSource(FileTreeSource, AtUrl):
    """A .zip archive (local or any fsspec URL), read member by member without extracting."""

    url_uris: ClassVar[bool] = True

    def describe(self) -> str:
        return f"zip:{redact(self.url)} layout={self.layout}"

    @contextmanager
    def _open(self) -> Iterator[zipfile.ZipFile]:
        with ExitStack() as stack:
            try:
                raw = stack.enter_context(fsspec.open(self.url, "rb"))
                archive = stack.enter_context(zipfile.ZipFile(raw))
            except Exception as exc:  # a driver's own errors too (botocore's, ftplib's)
                raise SourceError(
                    f"cannot open zip archive {redact(self.url)}: {one_line(exc)}"
                ) from exc
            yield archive

    def scan(self) -> Listing:
        with self._open() as archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
        return self._listing(names, lambda r: f"zip://{r}::{self.url}")

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        max_bytes = self.max_bytes
        with self._open() as archive:
            first: dict[str, zipfile.ZipInfo] = {}  # a name held twice: its first member, as tar
            for info in archive.infolist():
                first.setdefault(info.filename, info)
            for entry in entries:
                # up to the first ``::``: no member name holds one, the archive's URL may
                member = first.get(entry.uri[len("zip://") : entry.uri.index("::")])
                if member is None:
                    yield entry, "archive member disappeared"
                else:
                    yield entry, _read_zip_member(archive, member, max_bytes)
