"""Where a project keeps its state, and what its data must look like (``store``, ``data``)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from kennel.config._base import STATE_DIR, _Strict, checked


class StoreConfig(_Strict):
    # SQLAlchemy URL of the metadata database; sqlite paths are relative to the project root.
    metadata_url: str = f"sqlite:///{STATE_DIR}/kennel.db"
    # A local folder or any fsspec URL (s3://bucket/prefix, memory://x, file:///abs/path);
    # s3+http(s)://host:port/bucket/prefix names an S3-compatible server (kennel.storage).
    artifacts_url: str = f"{STATE_DIR}/artifacts"

    @field_validator("artifacts_url")
    @classmethod
    def _s3_shape(cls, url: str) -> str:
        return checked(url, s3_url_problem(url))


def s3_credentials_problem(url: str) -> str | None:
    """Why an S3 URL that carries credentials (``s3://KEY:SECRET@bucket``) is refused, or None:
    S3 would take them for part of the bucket's name, and every message naming the URL would
    show them. The AWS settings are where they go."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("s3", "s3a", "s3+http", "s3+https"):
        return None
    first = rest.split("/", 1)[0]  # a bucket (s3://) or host[:port] (s3+http://)
    # a secret may hold "/": then what precedes it still shows "KEY:" where no bucket name
    # holds a colon and no port is anything but digits
    _host, colon, after = first.partition(":")
    if "@" not in first and not (colon and not after.isdigit() and "@" in rest):
        return None
    return (
        f"{scheme}:// URLs take no credentials: set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) instead"
    )


def s3_url_problem(url: str) -> str | None:
    """What is wrong with an ``s3://bucket/prefix`` or ``s3+http(s)://host:port/bucket/prefix``
    URL (a port that is not a number, no bucket, ``.``/``..`` segments that S3 would keep as
    literal key names, credentials), or None; other URLs are not looked at."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("s3", "s3+http", "s3+https"):
        return None
    credentials = s3_credentials_problem(url)
    if credentials:
        return credentials
    if scheme == "s3":
        path = rest
    else:
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 (parsing the port is the check)
        except ValueError:
            return f"{url!r}: the port after {parts.hostname or ''}: is not a number 0-65535"
        path = parts.path
    segments = path.strip("/").split("/")
    if not segments[0]:
        return f"'{scheme}://' names no bucket: use {scheme}://" + (
            "bucket/prefix" if scheme == "s3" else "host:port/bucket/prefix"
        )
    if any(s in (".", "..") for s in segments):
        return f"{url!r}: '.' and '..' are not allowed in the bucket or prefix"
    return None


Share = Annotated[float, Field(ge=0.0, lt=1.0)]


class SplitConfig(_Strict):
    test: Share = 0.2
    validation: Share = 0.0
    seed: int = 0  # any integer: it is only written into each content's rank key

    @model_validator(mode="after")
    def _fits(self) -> SplitConfig:
        if self.test + self.validation >= 1.0:
            raise ValueError("test + validation must leave a training share (sum < 1)")
        return self


class DataConfig(_Strict):
    # Allowed labels; an image with any other label is quarantined. Empty = accept any label.
    labels: list[str] = Field(default_factory=lambda: ["cat", "dog"])
    split: SplitConfig = Field(default_factory=SplitConfig)
    min_side: Annotated[int, Field(ge=1, le=65_535)] = 32
    # 40 MP: every common phone or camera photo; larger declared sizes are decompression bombs
    max_pixels: Annotated[int, Field(ge=1, le=2**32)] = 40_000_000
    max_file_bytes: Annotated[int, Field(ge=1, le=2**40)] = 64 * 1024 * 1024
    near_duplicate_distance: Annotated[int, Field(ge=0, le=16)] = 4
    # Worker processes for ingest and synthesis; 0 = one per CPU core.
    workers: Annotated[int, Field(ge=0, le=1024)] = 0
    # Where manifest and SQL rows may point besides the manifest's own folder: local folders
    # (relative ones hang from kennel.yaml's folder) or URL prefixes (s3://bucket/images/).
    # Rows pointing anywhere else are quarantined unread.
    allowed_roots: list[str] = Field(default_factory=list)

    @field_validator("labels")
    @classmethod
    def _distinct_labels(cls, labels: list[str]) -> list[str]:
        if any(not label.strip() for label in labels):
            raise ValueError("a label cannot be empty")
        twice = sorted(label for label, n in Counter(labels).items() if n > 1)
        if twice:
            raise ValueError(f"{', '.join(map(repr, twice))} listed twice")
        return labels
