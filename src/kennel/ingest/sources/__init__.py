"""Where images come from. Each source lists entries (uri, label, attrs) without reading bytes,
then reads the bytes of chosen entries in order. Every uri it records is one fsspec can open
again later (a local path, ``zip://member::archive``, ``memory://...``, ``s3://...``), which is what
lineage points at; a name holding ``::``, fsspec's separator of chained file systems, cannot be
recorded in such a URL, so archives and fsspec folders skip it (``CHAINED_NAME``).

Layouts: ``imagefolder`` takes the label from the parent folder (``cat/001.jpg``); ``flat`` takes
it from the file-name prefix (Kaggle's ``cat.123.jpg``); ``auto`` picks ``flat`` when nearly all
names carry a prefix. Manifests (CSV, Parquet) and SQL queries give ``uri`` and ``label`` columns.

Hostile lakes: only regular files are ever opened (a FIFO would block the read forever), reads
stop at the size limit whatever a header claims, and what a listing leaves out for such reasons
is counted in ``Listing.skipped``. A manifest or SQL row may only point inside the manifest's own
folder or a declared root (``data.allowed_roots``): a table is data, and data must not choose
which files on this machine become a dataset.

One module per source: ``folder``, ``zip_archive``, ``tar_archive``, ``fsspec_folder``, and
``table`` (rows, filled by ``manifest`` and ``sql``); ``base`` holds what they share.
:func:`open_source` picks one from a spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kennel.display import SQL_SCHEMES, redact
from kennel.errors import SourceError
from kennel.ingest.sources.base import (
    BAD_NAME,
    BROKEN_LINK,
    CHAINED_NAME,
    DEFAULT_MAX_BYTES,
    IMAGE_EXTENSIONS,
    LINKED_FOLDER,
    NOT_REGULAR,
    OUTSIDE_FOLDER,
    OUTSIDE_ROOTS,
    SYMLINK_LOOP,
    UNSAFE_MEMBER,
    DisputingSource,
    Entry,
    FileTreeSource,
    Layout,
    Listing,
    LocalFile,
    Located,
    LocatingSource,
    ReadResult,
    Source,
    detect_layout,
    is_image_name,
    label_for,
    read_uri,
    utf8,
)
from kennel.ingest.sources.folder import FolderSource
from kennel.ingest.sources.fsspec_folder import FsspecFolderSource
from kennel.ingest.sources.manifest import manifest_source
from kennel.ingest.sources.sql import sql_source
from kennel.ingest.sources.table import Confinement, TableSource
from kennel.ingest.sources.tar_archive import TarSource
from kennel.ingest.sources.zip_archive import ZipSource

__all__ = [
    "BAD_NAME",
    "BROKEN_LINK",
    "CHAINED_NAME",
    "DEFAULT_MAX_BYTES",
    "IMAGE_EXTENSIONS",
    "LINKED_FOLDER",
    "NOT_REGULAR",
    "OUTSIDE_FOLDER",
    "OUTSIDE_ROOTS",
    "SYMLINK_LOOP",
    "UNSAFE_MEMBER",
    "Confinement",
    "DisputingSource",
    "Entry",
    "FileTreeSource",
    "FolderSource",
    "FsspecFolderSource",
    "Layout",
    "Listing",
    "LocalFile",
    "Located",
    "LocatingSource",
    "ReadResult",
    "Source",
    "TableSource",
    "TarSource",
    "ZipSource",
    "detect_layout",
    "is_image_name",
    "label_for",
    "manifest_source",
    "open_source",
    "read_uri",
    "redact",
    "sql_source",
]


def open_source(
    spec: str,
    *,
    layout: Layout = "auto",
    labels: Sequence[str] = (),
    sql_query: str | None = None,
    sql_table: str | None = None,
    uri_column: str = "uri",
    label_column: str = "label",
    allowed_roots: Sequence[str] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
    require_labels: bool = True,
) -> Source:
    """Pick the source type from ``spec``: a SQL URL, a manifest, an archive, a folder or a URL.
    ``allowed_roots``: where manifest and SQL rows may point besides the manifest's folder;
    ``max_bytes``: no file is read beyond this (``data.max_file_bytes``);
    ``require_labels=False``: a manifest or SQL source may have no label column (inputs a model
    is to label, as batch scoring's)."""
    if not utf8(spec):
        raise SourceError(f"source {spec!r} is not a UTF-8 name; rename it")
    lower = spec.lower()
    columns = {"uri_column": uri_column, "label_column": label_column}
    tabular = lower.endswith((".csv", ".parquet")) or (
        lower.startswith(SQL_SCHEMES) and "://" in spec
    )
    if tabular and layout != "auto":  # each row names its label: a layout would be ignored
        raise SourceError(
            f"--layout is for a folder or an archive; {redact(spec)} names each image's label "
            "in its --label-column"
        )
    if tabular and uri_column == label_column:
        raise SourceError(
            f"--uri-column and --label-column both name column {uri_column!r}: each image's uri "
            "and its label need columns of their own"
        )
    if lower.startswith(SQL_SCHEMES) and "://" in spec:
        return sql_source(
            spec,
            query=sql_query,
            table=sql_table,
            allowed_roots=allowed_roots,
            max_bytes=max_bytes,
            require_labels=require_labels,
            **columns,
        )
    if sql_query is not None or sql_table is not None:  # a folder would ignore them
        given = "--sql-table" if sql_table is not None else "--sql-query"
        raise SourceError(f"{given} is for a SQL URL source, and {spec!r} is not one")
    if lower.endswith((".csv", ".parquet")):
        return manifest_source(
            spec,
            allowed_roots=allowed_roots,
            max_bytes=max_bytes,
            require_labels=require_labels,
            **columns,
        )
    if (uri_column, label_column) != ("uri", "label"):
        raise SourceError(
            f"--uri-column/--label-column are for a manifest or SQL source, and {spec!r} is neither"
        )
    local = spec if "://" in spec else str(Path(spec).resolve())
    archive = lower.endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"))
    if archive and lower.startswith(("s3+http://", "s3+https://")):
        raise SourceError(  # a member's uri (zip://m::URL) would not open again for lineage
            f"source {redact(spec)}: an archive on an S3-compatible server is named "
            "s3://bucket/key, with the server in AWS_ENDPOINT_URL"
        )
    if lower.endswith(".zip"):
        return ZipSource(local, layout, labels, max_bytes)
    if lower.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return TarSource(local, layout, labels, max_bytes)
    if "://" in spec and not spec.startswith("file://"):
        return FsspecFolderSource(spec, layout, labels, max_bytes)
    path = Path(spec.removeprefix("file://"))
    if not path.exists():
        raise SourceError(f"source {spec!r} does not exist")
    if not path.is_dir():
        raise SourceError(
            f"source {spec!r} is a file kennel cannot read as a dataset "
            "(expected a folder, .zip, .tar[.gz], .csv or .parquet)"
        )
    return FolderSource(path, layout, labels, max_bytes)
