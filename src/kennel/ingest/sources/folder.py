"""A local folder: regular files only, and never a read outside it."""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from kennel.ingest.sources.base import (
    BAD_NAME,
    BROKEN_LINK,
    LINKED_FOLDER,
    NOT_REGULAR,
    SYMLINK_LOOP,
    AtRoot,
    Entry,
    FileTreeSource,
    Listing,
    LocalFile,
    ReadResult,
    os_reason,
    utf8,
)


def _kind(item: os.DirEntry[str]) -> str:
    """``folder`` or ``file`` (a regular one, or a symlink to one), else why it is skipped."""
    try:
        if item.is_symlink():
            mode = os.stat(item.path).st_mode  # follows the link: a loop raises ELOOP
            if stat.S_ISDIR(mode):
                return LINKED_FOLDER
            return "file" if stat.S_ISREG(mode) else NOT_REGULAR
        if item.is_dir(follow_symlinks=False):
            return "folder"
        return "file" if item.is_file(follow_symlinks=False) else NOT_REGULAR
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return SYMLINK_LOOP
        return BROKEN_LINK if exc.errno == errno.ENOENT else f"unreadable ({os_reason(exc)})"


@dataclass(eq=False, repr=False)
class FolderSource(FileTreeSource, AtRoot):
    """A local folder: regular files only; symlinks that lead outside it are refused."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.root = self.root.resolve()

    def describe(self) -> str:
        return f"folder:{self.root} layout={self.layout}"

    def _walk(self) -> tuple[list[str], Counter[str]]:
        rels: list[str] = []
        skipped: Counter[str] = Counter()
        folders = [str(self.root)]
        cut = len(os.path.join(str(self.root), ""))  # a file's path relative to the root
        while folders:
            folder = folders.pop()
            try:
                with os.scandir(folder) as listing:
                    items = list(listing)
            except OSError as exc:
                skipped[f"unreadable folder ({os_reason(exc)})"] += 1
                continue
            for item in items:
                if item.name.startswith("."):
                    continue  # hidden files and folders (.git, .DS_Store) are not data
                if not utf8(item.name):
                    skipped[BAD_NAME] += 1
                    continue
                kind = _kind(item)
                if kind == "folder":
                    folders.append(item.path)
                elif kind == "file":  # scandir's paths start with the folder it was given
                    rel = item.path[cut:]
                    rels.append(rel if os.sep == "/" else rel.replace(os.sep, "/"))
                else:
                    skipped[kind] += 1
        return rels, skipped

    def scan(self) -> Listing:
        rels, skipped = self._walk()
        root = os.path.join(str(self.root), "")
        return self._listing(rels, lambda r: root + r, **skipped)

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        folders: dict[str, str] = {}
        for entry, file in self.locate(entries):
            yield entry, file.read(folders)

    def locate(self, entries: list[Entry]) -> Iterator[tuple[Entry, LocalFile]]:
        """Each entry as a file to read later, confined to the folder when it is read."""
        root, max_bytes = str(self.root), self.max_bytes
        for entry in entries:
            yield entry, LocalFile(entry.uri, max_bytes, root)
