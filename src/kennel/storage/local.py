"""A folder on the local disk as a BlobStore: each blob a new file, written whole before it is
linked under its name (``kennel.storage.newfile``), fsynced when asked."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from kennel.errors import NotFoundError, StorageError, UnsafePathError
from kennel.storage.base import check_key
from kennel.storage.newfile import TMP_PREFIX, write_new

_FOLDERS_KEPT = 1 << 17  # a content store has 257 folders (65,793 in the nested layout)


class LocalBlobStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self.url = str(self.root)
        # folders this store made (or found) and resolved inside its root, by key prefix: a
        # write into one of them needs neither a resolve (~70 us) nor a mkdir again
        self._folders: dict[str, Path] = {}

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise UnsafePathError(f"artifact key {key!r} resolves outside {self.root}")
        return path

    def _place(self, key: str) -> str:
        """Where ``key`` is written: ``_path(key)`` with its folder made, resolving the folder
        once per store (the caller resolves, and confines, a name that is a symlink)."""
        folder, _, name = check_key(key).rpartition("/")
        return os.path.join(self._folder(folder), name)

    def _folder(self, folder: str) -> Path:
        """``folder`` (a checked key prefix) made and resolved inside the root, from the cache
        when this store made or found it before. A folder this store has just made inside a
        resolved one is a real folder: only one that was already there (maybe a symlink) is
        resolved and confined, so each of a fresh store's ``sha256/ab`` folders costs one
        ``mkdir``."""
        path = self._folders.get(folder)
        if path is not None:
            return path
        if not folder:  # the root, made on the first write
            self.root.mkdir(parents=True, exist_ok=True)
            self._folders[folder] = self.root
            return self.root
        up, _, name = folder.rpartition("/")
        path = self._folder(up) / name
        try:
            os.mkdir(path)
        except FileExistsError:
            path = self._path(folder)  # resolved (a symlink is followed) and confined
        return self._keep(folder, path)

    def _keep(self, folder: str, path: Path) -> Path:
        """Remember ``folder`` as ``path`` (a bounded cache: cleared when full)."""
        if len(self._folders) >= _FOLDERS_KEPT:
            self._folders.clear()
        self._folders[folder] = path
        return path

    def _free(self, key: str, path: str) -> str | None:
        """``path`` (from ``_place``) when nothing is there yet; the resolved, confined target
        when it is a symlink to nothing; None when the key is taken. One ``lstat`` for a new
        key, the common case."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return path
        if not stat.S_ISLNK(mode):
            return None
        target = str(self._path(key))  # a symlink is resolved, and confined, every time
        return None if os.path.exists(target) else target

    def put(self, key: str, data: bytes) -> bool:
        return self._put(key, data, durable=True)

    def put_many(self, items: list[tuple[str, bytes]], *, durable: bool = True) -> int:
        # One filesystem sync for the batch instead of two fsyncs per file: ~9x faster ingest.
        # durable=False: none at all; the caller calls ``sync`` before relying on the bytes.
        created = sum(self._put(key, data, durable=False) for key, data in items)
        if created and durable:
            self.sync()
        return created

    def sync(self) -> None:
        """Make every write to this store so far durable, whichever process made it: one
        sync of the filesystem holding it (a write is in the page cache once it returns)."""
        _syncfs(self.root)

    def _put(self, key: str, data: bytes, *, durable: bool) -> bool:
        try:
            path = self._free(key, self._place(key))
            if path is None:
                return False
            try:
                created = write_new(path, data, durable=durable)
            except FileNotFoundError:  # its folder was removed since: make it again
                self._folders.clear()
                path = self._free(key, self._place(key))
                if path is None:
                    return False
                created = write_new(path, data, durable=durable)
            if created and durable:
                _fsync_dir(Path(path).parent)
            return created
        except OSError as exc:
            raise StorageError(f"cannot write artifact {key!r}: {exc.strerror or exc}") from exc

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"artifact {key!r} not found in {self.root}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read artifact {key!r}: {exc.strerror or exc}") from exc

    def exists(self, key: str) -> bool:
        """Whether a regular file is under ``key`` (following a symlink, which is resolved and
        confined as for a read). One ``lstat`` in a folder resolved once per store, the common
        case: a full resolve of every key took ~70 us, seconds for a folder of 100,000 files
        whose blobs an ingest looks up."""
        folder, _, name = check_key(key).rpartition("/")
        found = self._existing_folder(folder)
        if found is None:
            return False
        try:
            mode = os.lstat(os.path.join(found, name)).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return False
        if stat.S_ISLNK(mode):
            return self._path(key).is_file()  # resolved, and confined, every time
        return stat.S_ISREG(mode)

    def _existing_folder(self, folder: str) -> Path | None:
        """``folder`` (a checked key prefix) resolved inside the root when it is a folder now,
        from the cache of folders this store made or found; None when there is none (not
        cached: it may be made later). Never makes a folder."""
        path = self._folders.get(folder)
        if path is not None:
            return path
        resolved = self._path(folder) if folder else self.root
        return self._keep(folder, resolved) if resolved.is_dir() else None

    def check(self) -> None:
        # the folder is made on the first write; what must not be there is a file in its way
        for path in (self.root, *self.root.parents):
            if path.exists():
                if not path.is_dir():
                    raise StorageError(f"the artifact store {self.root}: {path} is not a folder")
                return

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if not name.startswith(TMP_PREFIX):
                    yield (Path(dirpath) / name).relative_to(self.root).as_posix()


def _syncfs(path: Path) -> None:
    """Flush every dirty page of the filesystem holding ``path`` (Linux syncfs; else sync)."""
    libc = _libc()
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc is None or libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc if hasattr(libc, "syncfs") else None
    except OSError:
        return None


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
