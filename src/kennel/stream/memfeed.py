"""The model feed within one process: :class:`~kennel.stream.feed.Feed` over a list, for a
publisher and its subscribers that share a process (an embedded app, a test, a benchmark of
the subscriber alone) and need no Redis. It keeps Redis Streams' semantics, which the feed
contract suite checks on both: ids ``"<ms>-<seq>"`` that only grow, reads after an id oldest
first, a blocking read woken by a publish, the newest ``maxlen`` entries kept."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping

from kennel.errors import ServiceError
from kennel.stream.feed import check_names

_ID = re.compile(r"(\d+)(?:-(\d+))?")
_MAX = (1 << 64) - 1  # ids are two unsigned 64-bit numbers, as in Redis


def _parse(entry: str) -> tuple[int, int]:
    match = _ID.fullmatch(entry)
    if match is None or int(match[1]) > _MAX or int(match[2] or 0) > _MAX:
        raise ServiceError(f"invalid feed entry id {entry!r}: expected '<ms>-<seq>'")
    return int(match[1]), int(match[2] or 0)


def _text(entry: tuple[int, int]) -> str:
    return f"{entry[0]}-{entry[1]}"


class MemoryFeed:
    """A feed in memory, safe to share between threads; ``maxlen`` newest entries are kept."""

    def __init__(self, *, maxlen: int = 50) -> None:
        self.maxlen = maxlen
        self._entries: list[tuple[tuple[int, int], dict[str, bytes]]] = []
        self._last = (0, 0)
        self._changed = threading.Condition()

    def publish(self, fields: Mapping[str, bytes]) -> str:
        if not fields:
            raise ServiceError("cannot publish an empty entry: a feed entry needs a field")
        check_names(fields)
        copy = {str(k): bytes(v) for k, v in fields.items()}
        with self._changed:
            now = time.time_ns() // 1_000_000
            ms, seq = self._last
            # a clock that stands still or steps back still gives a greater id
            self._last = (now, 0) if now > ms else (ms, seq + 1)
            self._entries.append((self._last, copy))
            del self._entries[: max(0, len(self._entries) - self.maxlen)]
            self._changed.notify_all()
            return _text(self._last)

    def read(self, after: str, block_ms: int) -> list[tuple[str, dict[str, bytes]]]:
        start = _parse(after)
        if block_ms < 0:
            raise ServiceError(f"cannot wait {block_ms} ms for the feed: not a duration")
        deadline = time.monotonic() + block_ms / 1000
        with self._changed:
            while True:
                found = [(_text(i), dict(f)) for i, f in self._entries if i > start]
                left = deadline - time.monotonic()
                if found or (block_ms and left <= 0):
                    return found
                self._changed.wait(left if block_ms else None)

    def latest(self, count: int) -> list[tuple[str, dict[str, bytes]]]:
        if count < 1:
            raise ServiceError(f"cannot read the latest {count} feed entries: count must be >= 1")
        with self._changed:
            return [(_text(i), dict(f)) for i, f in reversed(self._entries[-count:])]

    def close(self) -> None:
        """Nothing to release; here so that either feed can be closed the same way."""
