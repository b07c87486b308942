"""Time buckets counted by the database: a series over a range is aggregated in SQL (one row
per bucket), never by reading every row of the range into Python.

Each bucket is its own range condition on the time column (one ``UNION ALL`` of small
aggregates) rather than arithmetic on every row's time: SQLite keeps times as text, and
parsing each one costs more than the whole index range scan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, Select, bindparam, literal, union_all
from sqlalchemy.sql.elements import Label
from sqlalchemy.sql.selectable import CompoundSelect

MAX_BUCKETS = 500  # SQLite allows 500 terms in one compound SELECT


@dataclass(frozen=True)
class Buckets:
    """``count`` equal buckets over [since, until)."""

    since: datetime
    until: datetime
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_BUCKETS:
            raise ValueError(f"buckets: 1 to {MAX_BUCKETS}, not {self.count}")
        if self.until <= self.since:
            raise ValueError("buckets: until must be after since")

    @property
    def width(self) -> timedelta:
        return (self.until - self.since) / self.count

    @property
    def width_s(self) -> float:
        return self.width.total_seconds()

    def start(self, index: int) -> datetime:
        return self.since + index * self.width

    def bounds(self) -> dict[str, datetime]:
        """The parameters of a ``bucketed`` statement: each bucket's first and last time."""
        out = {}
        for i in range(self.count):
            out[f"bucket_lo_{i}"] = self.start(i)
            out[f"bucket_hi_{i}"] = self.until if i == self.count - 1 else self.start(i + 1)
        return out


def bucketed(
    column: Any, count: int, query: Callable[[Label[int]], Select[Any]]
) -> Select[Any] | CompoundSelect[Any]:
    """``query(bucket_number)`` for each of ``count`` buckets, limited to the rows whose
    ``column`` falls in it, as one statement whose rows carry the bucket number as
    ``bucket``; execute it with ``Buckets.bounds()``. Its shape depends only on ``count``,
    so one object serves every range (building and compiling 60 parts costs more than the
    query): keep it."""
    parts = []
    for i in range(count):
        low = bindparam(f"bucket_lo_{i}", type_=column.type)
        high = bindparam(f"bucket_hi_{i}", type_=column.type)
        number = literal(i, Integer).label("bucket")
        parts.append(query(number).where(column >= low, column < high))
    return parts[0] if len(parts) == 1 else union_all(*parts)
