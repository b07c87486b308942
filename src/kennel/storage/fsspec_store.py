"""Any fsspec filesystem (s3, gcs, azure, memory, file, ...) as a BlobStore."""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec

from kennel.errors import NotFoundError, StorageError
from kennel.storage.base import check_key

# Object stores write a whole object atomically on PUT; elsewhere write a temp name, then move.
_ATOMIC_PUT = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"}


class FsspecBlobStore:
    def __init__(self, url: str, **storage_options: Any) -> None:
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        self._atomic_put = bool(_ATOMIC_PUT.intersection(protocols))

    def _path(self, key: str) -> str:
        return posixpath.join(self.root, check_key(key))

    def put(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            if self.fs.exists(path):
                return False
            if self._atomic_put:
                self.fs.pipe_file(path, data)
                return True
            parent = posixpath.dirname(path)
            self.fs.makedirs(parent, exist_ok=True)
            tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}")
            self.fs.pipe_file(tmp, data)
            if self.fs.exists(path):
                self.fs.rm_file(tmp)
                return False
            self.fs.mv(tmp, path)
            return True
        except OSError as exc:
            raise StorageError(f"cannot write artifact {key!r} to {self.url}: {exc}") from exc

    def put_many(self, items: list[tuple[str, bytes]]) -> int:
        return sum(self.put(key, data) for key, data in items)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            data: bytes = self.fs.cat_file(path)
            return data
        except FileNotFoundError as exc:
            raise NotFoundError(f"artifact {key!r} not found in {self.url}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read artifact {key!r} from {self.url}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return bool(self.fs.isfile(self._path(key)))

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not self.fs.exists(base):
            return
        root = self.root.strip("/")
        for path in self.fs.find(base):
            rel = path.strip("/")[len(root) :].lstrip("/")
            if not posixpath.basename(rel).startswith(".tmp-"):
                yield rel
