"""Time buckets computed by the database: a series over a range is aggregated in SQL (one row
per bucket), never by reading every row of the range into Python."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, cast, func
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

MAX_BUCKETS = 500


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
    def width_s(self) -> float:
        # whole seconds: SQLite's clock in SQL has one-second resolution
        return max(1.0, float(int((self.until - self.since).total_seconds() / self.count) + 1))

    def start(self, index: int) -> datetime:
        return self.since + timedelta(seconds=index * self.width_s)

    def index(self, session: Session, column: Any) -> ColumnElement[int]:
        """The bucket number of ``column`` (a stored time at or after ``since``)."""
        origin = int(self.since.timestamp())
        width = int(self.width_s)
        if session.get_bind().dialect.name == "postgresql":
            seconds: ColumnElement[Any] = func.extract("epoch", column)
            return cast(func.floor((seconds - origin) / width), Integer)
        # SQLite keeps a UTC time as text; strftime('%s') reads it as whole seconds
        seconds = cast(func.strftime("%s", column), Integer)
        return cast((seconds - origin) / width, Integer)
