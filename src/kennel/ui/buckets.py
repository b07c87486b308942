"""Time buckets for the Monitoring page's request and telemetry charts, aligned to round widths
(a minute ... a month) so that the buckets of two requests coincide, and a cache of the buckets
that have ended: the page polls every few seconds, and recounting a week of the prediction
log each time would cost every viewer ~50 ms for numbers that do not change. Only the bucket
still running, and buckets whose entry is older than ``ttl_s``, are counted again, so a row
that reaches the log late (a journal replayed after an outage) shows within ``ttl_s``."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

T = TypeVar("T")
WIDTHS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400, 30 * 86400)


@dataclass(frozen=True)
class Grid:
    """``count`` buckets of ``width`` from ``start`` (a multiple of the width since 1970)."""

    start: datetime
    width: timedelta
    count: int

    def at(self, index: int) -> datetime:
        return self.start + index * self.width


def grid(since: datetime, until: datetime, most: int) -> Grid:
    """The narrowest round width that covers [since, until) in at most ``most`` + 1 buckets,
    the first starting at or before ``since``."""
    span = (until - since).total_seconds()
    width = next((w for w in WIDTHS if span / w <= most), WIDTHS[-1])
    start = math.floor(since.timestamp() / width) * width
    count = max(1, math.ceil((until.timestamp() - start) / width))
    return Grid(datetime.fromtimestamp(start, UTC), timedelta(seconds=width), count)


class BucketCache(Generic[T]):
    """Results per ended bucket, by (what, width, bucket start), for ``ttl_s``."""

    def __init__(self, ttl_s: float = 60.0, keep: int = 20_000) -> None:
        self.ttl_s = ttl_s
        self.keep = keep
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[Hashable, float, float], tuple[float, list[T]]]
        self._items = OrderedDict()

    def series(
        self,
        what: Hashable,
        g: Grid,
        now: datetime,
        count: Callable[[datetime, datetime, int], Sequence[tuple[datetime, T]]],
    ) -> list[tuple[int, T]]:
        """Every result of the grid's buckets as (bucket index, result), from the cache where
        it holds the bucket and ``count(since, until, buckets)`` (results with their bucket's
        start) for the run of buckets it does not."""
        width = g.width.total_seconds()
        keys = [(what, width, g.at(i).timestamp()) for i in range(g.count)]
        clock = now.timestamp()
        with self._lock:
            cached = {
                i: self._items[k][1]
                for i, k in enumerate(keys)
                if k in self._items and clock - self._items[k][0] < self.ttl_s
            }
        missing = [i for i in range(g.count) if i not in cached]
        if missing:
            first, last = missing[0], missing[-1] + 1
            found: dict[int, list[T]] = {i: [] for i in range(first, last)}
            for at, result in count(g.at(first), g.at(last), last - first):
                found[first + round((at - g.at(first)) / g.width)].append(result)
            ended = {i: v for i, v in found.items() if g.at(i + 1) <= now}
            with self._lock:
                for i, value in ended.items():
                    self._items[keys[i]] = (clock, value)
                    self._items.move_to_end(keys[i])
                while len(self._items) > self.keep:
                    self._items.popitem(last=False)
            cached.update(found)
        return [(i, r) for i in range(g.count) for r in cached[i]]
