"""A folder on any fsspec filesystem (``s3://bucket/prefix``, ``memory://lake``, ...), or on an
S3-compatible server named in the URL (``s3+http://host:port/bucket/prefix``, the artifact
store's form): its files are recorded under that same URL, which :func:`read_uri` opens."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kennel.display import redact
from kennel.errors import SourceError
from kennel.ingest.sources.base import (
    OUTSIDE_FOLDER,
    AtUrl,
    Entry,
    FileTreeSource,
    Listing,
    ReadResult,
    one_line,
    read_uri,
    url_to_fs,
)

# File systems whose folders exist apart from the files in them, so that a missing location can
# be told from an empty one. Elsewhere (s3, gcs, az, ...) a "folder" is only the start that
# names share, and a prefix nothing was written under, a mistyped one included, lists as empty.
_FOLDER_PROTOCOLS = frozenset({"file", "local", "memory", "ftp", "sftp", "ssh"})
# A web server's "folder" is a page of links, and fsspec lists one it cannot fetch (refused,
# 404) as empty: the page is asked for first, so that such a location is an error.
_WEB = frozenset({"http", "https"})
_S3 = frozenset({"s3", "s3a"})
_BUCKET = re.compile(r"[A-Za-z0-9.\-_]{1,255}")  # what botocore accepts (S3-compatible too)


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
    bucket: str | None = field(init=False)  # on S3

    def __post_init__(self) -> None:
        super().__post_init__()
        given, self.url = self.url, self.url.rstrip("/")
        try:  # an FTP or SFTP file system logs in here: refused, or a bad login
            self.fs, root = url_to_fs(self.url)
        except Exception as exc:  # a driver's own errors too (ftplib's are not OSErrors)
            raise SourceError(f"cannot open {redact(given)}: {one_line(exc)}") from exc
        self.root = root.rstrip("/")
        self.bucket = self.root.split("/", 1)[0] if _protocols(self.fs) & _S3 else None
        if self.bucket is not None and not _BUCKET.fullmatch(self.bucket):
            raise SourceError(f"source {redact(given)}: {self.bucket!r} is not a valid bucket name")

    def describe(self) -> str:
        return f"fsspec:{redact(self.url)} layout={self.layout}"

    def scan(self) -> Listing:
        protocols = _protocols(self.fs)
        folders = bool(protocols & _FOLDER_PROTOCOLS)
        try:
            if protocols & _WEB:
                self.fs.info(self.root)  # FileNotFoundError on a 404, the client's own on refusal
            if folders and not self.fs.isdir(self.root):
                there = "is not a folder" if self.fs.exists(self.root) else "does not exist"
                raise SourceError(f"source {redact(self.url)} {there}")
            paths = self.fs.find(self.root)
        except FileNotFoundError as exc:  # on S3: the bucket (a missing prefix lists as empty)
            if not self.bucket:
                raise SourceError(f"source {redact(self.url)}: {one_line(exc)}") from exc
            what = f"no bucket {self.bucket!r}"
            raise SourceError(f"cannot list {redact(self.url)}: {what}") from exc
        except SourceError:
            raise
        except Exception as exc:  # a driver's own errors (botocore's are not OSErrors)
            on = f" (bucket {self.bucket!r})" if self.bucket else ""
            raise SourceError(f"cannot list {redact(self.url)}{on}: {one_line(exc)}") from exc
        if not paths and not folders:
            note = (
                f"nothing is stored under {redact(self.url)}: an object store has no folders, "
                "so a prefix that does not exist lists as empty too; check it is not mistyped"
            )
            return Listing([], 0, note=note)
        prefix = self.root.strip("/")
        rels = [p.strip("/")[len(prefix) :].lstrip("/") for p in paths]
        shown = redact(self.url)  # a file is recorded without the password its URL holds
        return self._listing(rels, lambda r: f"{shown}/{r}")

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        max_bytes = self.max_bytes
        shown = redact(self.url)
        for entry in entries:
            uri = entry.uri
            if shown != self.url and uri.startswith(f"{shown}/"):  # read with the password
                uri = self.url + uri[len(shown) :]
            yield entry, read_uri(uri, max_bytes)
