"""Rows of (uri, label, extra columns), from a manifest or a SQL query, confined to where the
data may point."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kennel.display import redact
from kennel.errors import SourceError
from kennel.ingest.sources.base import (
    DEFAULT_MAX_BYTES,
    LABEL_CONFLICT,
    NO_URI,
    OUTSIDE_ROOTS,
    REPEATED_ROW,
    Entry,
    Listing,
    LocalFile,
    Located,
    ReadResult,
    read_uri,
)
from kennel.storage import sha256_hex


def _fold_url(url: str) -> str | None:
    """``url`` with ``.`` and ``..`` segments folded; None when they climb above its host."""
    scheme, _, rest = url.partition("://")
    parts: list[str] = []
    for part in rest.split("/"):
        if part == "..":
            if len(parts) <= 1:
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    return f"{scheme}://{'/'.join(parts)}"


class Confinement:
    """Where manifest and SQL rows may point. By default a row is a path relative to the
    manifest's folder that stays inside it; an absolute path, a ``file://`` or other URL, or a
    ``..`` that leaves the folder is allowed only under one of ``roots`` (local folders, or URL
    prefixes such as ``s3://bucket/images/``)."""

    def __init__(self, base: str | None, roots: Sequence[str] = ()) -> None:
        self.base = base
        self.folders: list[Path] = []
        self.prefixes: list[str] = []
        for root in roots:
            if "://" in root and not root.startswith("file://"):
                folded = _fold_url(root)
                if folded:
                    self.prefixes.append(folded.rstrip("/") + "/")
            else:
                self.folders.append(Path(root.removeprefix("file://")).expanduser().resolve())

    def place(self, uri: str) -> str | None:
        """The uri to record and read, or None when it points outside every allowed root."""
        if uri.startswith("file://"):
            return self._local(Path(uri.removeprefix("file://")), self.folders)
        if "://" in uri:
            return self._url(uri, self.prefixes)
        if os.path.isabs(uri) or self.base is None:
            return self._local(Path(uri), self.folders)
        if "://" in self.base:
            base = self.base.rstrip("/")
            return self._url(f"{base}/{uri}", [base + "/", *self.prefixes])
        return self._local(Path(self.base) / uri, [Path(self.base).resolve(), *self.folders])

    @staticmethod
    def _local(path: Path, folders: Sequence[Path]) -> str | None:
        try:
            resolved = path.resolve()  # symlinks too: a link in the folder may lead out of it
        except (OSError, RuntimeError):
            return None
        return str(resolved) if any(resolved.is_relative_to(f) for f in folders) else None

    @staticmethod
    def _url(url: str, prefixes: Sequence[str]) -> str | None:
        folded = _fold_url(url)
        return folded if folded and folded.startswith(tuple(prefixes)) else None

    def refusal(self, row: int, uri: str) -> str:
        where = f"inside the manifest's folder {self.base} " if self.base else ""
        return (
            f"{OUTSIDE_ROOTS}: row {row} points at {uri!r}, which is not a path {where}"
            "nor under data.allowed_roots"
        )


class TableSource:
    """Rows of (uri, label, extra columns) from a CSV/Parquet manifest or a SQL query. Rows that
    point outside the allowed roots stay entries (so they are quarantined and reported) but are
    never read."""

    def __init__(
        self,
        description: str,
        rows: Iterable[Mapping[str, Any]],
        *,
        base: str | None,
        allowed_roots: Sequence[str] = (),
        uri_column: str = "uri",
        label_column: str = "label",
        max_bytes: int = DEFAULT_MAX_BYTES,
        refused_rows: Mapping[int, str] | None = None,
        require_labels: bool = True,
    ) -> None:
        """``rows`` are read once, in order (a SQL query's may stream from its cursor);
        ``refused_rows``: why a row, by number (1 is the first), is quarantined unread;
        ``require_labels=False``: rows to be labelled by a model (batch scoring) may come
        without a label column (a label given is kept)."""
        self.description = description
        self.max_bytes = max_bytes
        confinement = Confinement(base, allowed_roots)
        refusals = refused_rows or {}
        entries: dict[str, Entry] = {}
        self.refused: dict[str, str] = {}
        self.conflicts: dict[str, set[str]] = {}  # placed files named with two labels
        self._disputed: dict[str, tuple[set[str], str]] | None = None  # read once
        self.secret_uris: dict[str, str] = {}  # a recorded uri -> the URL, password and all
        first: dict[str, tuple[int, str | None]] = {}  # each file's first row and its label
        self.repeated = 0  # rows naming a file an earlier row names, with the same label
        self.no_uri = 0  # rows naming no file at all (an empty or null uri)
        outside: set[str] = set()  # files whose only rows so far were refused (not placed)
        for number, row in enumerate(rows, start=1):
            if number == 1 and (
                uri_column not in row or (require_labels and label_column not in row)
            ):
                wanted = (
                    f"columns {uri_column!r} and {label_column!r}"
                    if require_labels
                    else f"column {uri_column!r}"
                )
                raise SourceError(f"{description}: needs {wanted}, has {sorted(row)}")
            refusal = refusals.get(number)
            if row[uri_column] is None or not str(row[uri_column]).strip():
                if refusal is None:
                    self.no_uri += 1  # never "None", nor the manifest's own folder
                    continue
                row = {**row, uri_column: f"(row {number})"}  # still quarantined, by its number
            written = str(row[uri_column])
            placed = None if refusal is not None else confinement.place(written)
            uri = written if placed is None else placed
            if (shown := redact(uri)) != uri:  # recorded without the password, read with it
                self.secret_uris[shown] = uri
                uri = shown
            given = row.get(label_column)
            label = None if given is None or not str(given).strip() else str(given)
            if uri in first and placed is not None and uri in outside:
                del first[uri]  # a spelling refused before, placed now: this row stands
                outside.discard(uri)
                self.refused.pop(uri, None)
                self.repeated += 1  # and the refused row is counted as a repeat of it
            attrs = {
                str(k): str(v)
                for k, v in row.items()
                if k not in (uri_column, label_column) and v is not None
            }
            if uri in first:  # the same file again ("d1.jpg" and "./d1.jpg" are one file)
                row_before, label_before = first[uri]
                if label == label_before or label is None or placed is None:
                    # counted, not offered twice: a blank label claims none, nor does a refused
                    # spelling of a file (whether or not an earlier row placed it: a file no
                    # row placed stays refused for that, and is never read)
                    self.repeated += 1
                elif label_before is None:  # the first row gave none: this row stands
                    self.repeated += 1
                    first[uri] = (number, label)
                    entries[uri] = Entry(uri, label, attrs)
                else:  # which label is right? neither is taken: the file is quarantined
                    self.conflicts.setdefault(uri, {label_before}).add(label)
                    self.refused[uri] = (
                        f"{LABEL_CONFLICT}: rows {row_before} and {number} name this file, "
                        f"labelled {label_before!r} and {label!r}"
                    )
                continue
            first[uri] = (number, label)
            if placed is None:
                self.refused[uri] = refusal or redact(confinement.refusal(number, written))
                outside.add(uri)
            entries[uri] = Entry(uri, label, attrs)
        self.entries = [entries[u] for u in sorted(entries)]

    def describe(self) -> str:
        return self.description

    def disputed(self) -> dict[str, tuple[set[str], str]]:
        """The content of each file rows name with two labels (refused unread), by sha256:
        its labels and the file, so that an ingest records it as disputed (one label's row
        alone, in a later manifest, would otherwise add it). Only files the rows placed within
        the allowed roots are here; each is read once, whatever asks again."""
        if self._disputed is not None:
            return self._disputed
        found: dict[str, tuple[set[str], str]] = {}
        for uri, labels in sorted(self.conflicts.items()):
            data = read_uri(self.secret_uris.get(uri, uri), self.max_bytes)
            if isinstance(data, bytes):
                sha = sha256_hex(data)
                found[sha] = (found.get(sha, (set(), uri))[0] | labels, uri)
        self._disputed = found
        return found

    def scan(self) -> Listing:
        skipped = {REPEATED_ROW: self.repeated, NO_URI: self.no_uri}
        return Listing(self.entries, 0, {k: n for k, n in skipped.items() if n})

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        max_bytes = self.max_bytes
        for entry in entries:
            refused = self.refused.get(entry.uri)
            uri = self.secret_uris.get(entry.uri, entry.uri)
            yield entry, refused if refused is not None else read_uri(uri, max_bytes)

    def locate(self, entries: list[Entry]) -> Iterator[tuple[Entry, Located]]:
        """Local rows as files to read later (where they point was confined when the rows were
        placed); refused rows as their reason; URLs read now, as ``read`` does."""
        max_bytes = self.max_bytes
        for entry in entries:
            refused = self.refused.get(entry.uri)
            if refused is not None:
                yield entry, refused
            elif entry.uri.startswith("file://") or "://" not in entry.uri:
                yield entry, LocalFile(entry.uri.removeprefix("file://"), max_bytes)
            else:
                yield entry, read_uri(self.secret_uris.get(entry.uri, entry.uri), max_bytes)
