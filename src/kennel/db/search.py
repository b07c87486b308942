"""Reads over the prediction log for people: a search with hard caps (a page of at most
``MAX_LIMIT`` hits, at most ``MAX_SPAN`` of the log scanned, no deeper than ``MAX_OFFSET``) and
request counts and latency per time bucket, aggregated by the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Executable, bindparam, func, select
from sqlalchemy.orm import Session

from kennel.db import aware
from kennel.db.schema import FeedbackRow, PredictionRow
from kennel.db.timeseries import Buckets, bucketed
from kennel.errors import ConfigError

MAX_SPAN = timedelta(days=31)
MAX_LIMIT = 200
MAX_OFFSET = 10_000


def _days(span: timedelta) -> str:
    return f"{span.total_seconds() / 86400:.3g} days"


@dataclass(frozen=True)
class PredictionQuery:
    """Which predictions to find: logged in [since, until), optionally of one environment,
    camera (``source``), predicted label, confidence range, and with or without a feedback
    label; ``offset``/``limit`` page through them, newest first."""

    since: datetime
    until: datetime
    environment: str | None = None
    source: str | None = None
    label: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    feedback: bool | None = None  # True: only labelled ones; False: only unlabelled ones
    offset: int = 0
    limit: int = 50

    def __post_init__(self) -> None:
        span = self.until - self.since
        if span <= timedelta(0):
            raise ConfigError("search: 'until' must be after 'since'")
        if span > MAX_SPAN:
            raise ConfigError(
                f"search: at most {_days(MAX_SPAN)} of the log can be scanned at once, and "
                f"this search spans {_days(span)}: narrow 'since' and 'until'"
            )
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ConfigError(f"search: a page holds 1 to {MAX_LIMIT} predictions")
        if not 0 <= self.offset <= MAX_OFFSET:
            raise ConfigError(
                f"search: at most {MAX_OFFSET:,} predictions deep: narrow the search instead"
            )
        low, high = self.min_confidence, self.max_confidence
        for name, value in (("min_conf", low), ("max_conf", high)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"search: {name} is a confidence between 0 and 1")
        if low is not None and high is not None and low > high:
            raise ConfigError("search: min_conf is above max_conf, so nothing can match")


@dataclass(frozen=True)
class SearchHit:
    """A prediction as a search lists it (no embedding, no probabilities) with its feedback."""

    id: str
    at: datetime
    environment: str
    source: str
    model: str
    version: int
    label: str
    confidence: float
    latency_ms: float
    kept: bool  # whether its input image was kept
    truth: str | None  # the feedback label, if one arrived

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"


def search(session: Session, q: PredictionQuery) -> tuple[list[SearchHit], bool]:
    p = PredictionRow
    query = (
        select(
            p.id,
            p.at,
            p.environment,
            p.source,
            p.model,
            p.version,
            p.label,
            p.confidence,
            p.latency_ms,
            p.input_sha256,
            FeedbackRow.label.label("truth"),
        )
        .outerjoin(FeedbackRow, FeedbackRow.prediction_id == p.id)
        .where(p.at >= q.since, p.at < q.until)
        .order_by(p.at.desc(), p.id.desc())
        .offset(q.offset)
        .limit(q.limit + 1)
    )
    if q.environment:
        query = query.where(p.environment == q.environment)
    if q.source:
        query = query.where(p.source == q.source)
    if q.label:
        query = query.where(p.label == q.label)
    if q.min_confidence is not None:
        query = query.where(p.confidence >= q.min_confidence)
    if q.max_confidence is not None:
        query = query.where(p.confidence <= q.max_confidence)
    if q.feedback is True:
        query = query.where(FeedbackRow.prediction_id.is_not(None))
    elif q.feedback is False:
        query = query.where(FeedbackRow.prediction_id.is_(None))
    rows = session.execute(query).all()
    hits = [
        SearchHit(
            r.id,
            aware(r.at),
            r.environment,
            r.source,
            r.model,
            r.version,
            r.label,
            r.confidence,
            r.latency_ms,
            r.input_sha256 is not None,
            r.truth,
        )
        for r in rows[: q.limit]
    ]
    return hits, len(rows) > q.limit


@dataclass(frozen=True)
class TrafficBucket:
    """Requests logged in one time bucket and their latency."""

    start: datetime
    width_s: float
    requests: int
    mean_latency_ms: float
    max_latency_ms: float

    @property
    def per_minute(self) -> float:
        return self.requests * 60.0 / self.width_s


@cache
def _traffic(count: int) -> Executable:
    p = PredictionRow
    return bucketed(
        p.at,
        count,
        lambda number: select(number, func.count(), func.avg(p.latency_ms),
                              func.max(p.latency_ms)).where(p.environment == bindparam("env")),
    )  # fmt: skip


def traffic(session: Session, environment: str, buckets: Buckets) -> list[TrafficBucket]:
    rows = session.execute(_traffic(buckets.count), {**buckets.bounds(), "env": environment})
    width = buckets.width_s
    return [
        TrafficBucket(buckets.start(int(b)), width, int(n), float(mean), float(top))
        for b, n, mean, top in sorted(rows.all(), key=lambda r: int(r[0]))
        if n
    ]
