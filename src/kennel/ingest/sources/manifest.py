"""A CSV or Parquet manifest: one row per file, its rows confined to the manifest's folder."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kennel.display import redact
from kennel.errors import SourceError
from kennel.ingest.sources.base import DEFAULT_MAX_BYTES, MALFORMED_ROW, one_line, url_to_fs
from kennel.ingest.sources.table import TableSource


def manifest_source(
    url: str,
    *,
    allowed_roots: Sequence[str] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
    require_labels: bool = True,
    **columns: str,
) -> TableSource:
    # A file:// URL names a local path, and is that path: its rows are confined the same way
    # (symlinks resolved, relative to its folder), and it is recorded the same way.
    url = url.removeprefix("file://")
    if "://" not in url:  # recorded as folders and archives are: absolute, whatever the cwd
        url = str(Path(url).resolve())
    base = url.rsplit("/", 1)[0] if "://" in url else str(Path(url).parent)
    data = _fetch(url)
    refused: dict[int, str] = {}
    if url.lower().endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(io.BytesIO(data)).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"manifest {redact(url)} is not valid Parquet: {exc}") from exc
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SourceError(f"manifest {redact(url)} is not UTF-8 text: {exc}") from exc
        rows, refused = _csv_rows(text, url)
    return TableSource(
        f"manifest:{redact(url)}",
        rows,
        base=base,
        allowed_roots=allowed_roots,
        max_bytes=max_bytes,
        refused_rows=refused,
        require_labels=require_labels,
        **columns,
    )


def _fetch(url: str) -> bytes:
    """The manifest's bytes, from a local path or any URL :func:`url_to_fs` opens; whatever
    keeps them from being read (a missing file, a refused connection or login, an HTTP error)
    is a SourceError."""
    try:
        fs, path = url_to_fs(url)
        with fs.open(path, "rb") as handle:
            data: bytes = handle.read()
    except Exception as exc:  # a driver's own errors too (botocore's, ftplib's, aiohttp's)
        raise SourceError(f"cannot read manifest {redact(url)}: {one_line(exc)}") from exc
    return data


def _csv_rows(text: str, url: str) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The rows of a CSV manifest, and why some are refused, by row number (1 is the first
    after the header): a row with more fields than the header does not say which of them is
    its uri or label (an unquoted comma in a name shifts the rest), so it is refused unread."""
    reader = csv.DictReader(io.StringIO(text))
    rows: list[dict[str, Any]] = []
    refused: dict[int, str] = {}
    try:
        for number, row in enumerate(reader, start=1):
            extra = row.pop(None, None)  # DictReader's restkey: the fields beyond the header
            if extra:
                header = len(reader.fieldnames or ())
                refused[number] = (
                    f"{MALFORMED_ROW}: row {number} has {header + len(extra)} fields, "
                    f"the header {header}"
                )
            rows.append(row)
    except csv.Error as exc:  # a field over csv's size limit, say
        raise SourceError(f"manifest {redact(url)} is not valid CSV: {exc}") from exc
    return rows, refused
