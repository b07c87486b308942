"""The prediction log as stored: served predictions, inputs a service could not use, and the
true labels that come back later as feedback."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import func, select

from kennel.db import Database, aware
from kennel.db.audit import record
from kennel.db.bulk import fetch_tuples, insert_new
from kennel.db.locking import serialize
from kennel.db.predblocks import blocks_of, window_of
from kennel.db.predcols import (
    COLUMNS,
    LEADING,
    PROBS_AT,
    PredictionColumns,
    columns_of,
    encode,
)
from kennel.db.schema import FeedbackRow, InputRejectionRow, PredictionBlockRow, PredictionRow
from kennel.db.search import PredictionQuery, SearchHit, TrafficBucket, search, traffic
from kennel.db.timeseries import Buckets

log = logging.getLogger(__name__)

__all__ = ["Feedback", "InputRejection", "LoggedPrediction", "Observed", "PredictionColumns",
           "PredictionQuery", "PredictionStore", "SearchHit", "TrafficBucket"]  # fmt: skip


@dataclass(frozen=True)
class LoggedPrediction:
    """One served prediction (API, camera, batch) as the log keeps it."""

    id: str
    at: datetime
    environment: str
    model: str
    version: int
    label: str
    confidence: float
    probabilities: dict[str, Any]
    quality: dict[str, Any]
    source: str
    latency_ms: float
    input_sha256: str | None
    embedding: bytes | None  # float16, little-endian (kennel.serve.predlog.decode_embedding)

    @property
    def ref(self) -> str:
        """The model version that served it, as NAME@VERSION."""
        return f"{self.model}@{self.version}"


@dataclass(frozen=True)
class InputRejection:
    """An input a service or camera could not use (not an image, truncated, a bomb...)."""

    at: datetime
    environment: str
    source: str
    reason: str


@dataclass(frozen=True)
class Feedback:
    """The true label of a prediction, from ``actor``."""

    prediction_id: str
    label: str
    at: datetime
    actor: str


@dataclass(frozen=True)
class Observed:
    """A prediction and the true label it received, if one came back."""

    prediction: LoggedPrediction
    truth: str | None


_PREDICTION_FIELDS = tuple(f.name for f in fields(LoggedPrediction))
_COLUMNS = tuple(getattr(PredictionRow, name) for name in _PREDICTION_FIELDS)
# what a monitoring window reads, in the order kennel.db.predcols.columns_of takes
_WINDOW_COLUMNS = (
    *(getattr(PredictionRow, name) for name in LEADING if name != "truth"),
    FeedbackRow.label.label("truth"),
    *(getattr(PredictionRow, name) for name in COLUMNS),
)


def _row(p: LoggedPrediction) -> dict[str, Any]:
    values = {name: getattr(p, name) for name in _PREDICTION_FIELDS}
    values.update(encode(p.probabilities, p.quality))
    return values


def _prediction(row: Any) -> LoggedPrediction:
    """From a row of ``_COLUMNS`` (a Row or an ORM PredictionRow)."""
    values = {name: getattr(row, name) for name in _PREDICTION_FIELDS}
    values["at"] = aware(values["at"])
    return LoggedPrediction(**values)


def _feedback(row: FeedbackRow) -> Feedback:
    return Feedback(row.prediction_id, row.label, aware(row.at), row.actor)


class PredictionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writes ---------------------------------------------------------------------------
    def add_many(
        self,
        predictions: Sequence[LoggedPrediction],
        rejections: Sequence[InputRejection] = (),
    ) -> None:
        """Store a batch in one transaction. A prediction whose id is stored already is
        skipped (a journal replayed after a crash inserts nothing twice); rejections have no
        natural key and are always added. The rows inserted are also stored as columnar
        blocks (``kennel.db.predblocks``), in the same transaction."""
        with self.db.session() as s:
            inserted = insert_new(
                s,
                PredictionRow.__table__,  # type: ignore[arg-type]
                [_row(p) for p in predictions],
                key="id",
            )
            try:
                blocks = blocks_of(p for p in predictions if p.id in inserted)
            except Exception:  # a copy for speed must never stop the log
                # (a malformed record that the rows take: an odd embedding, a huge version);
                # windows over these rows are read from the rows
                log.warning("prediction batch kept without its columnar block", exc_info=True)
                blocks = []
            if blocks:
                s.execute(
                    PredictionBlockRow.__table__.insert(),  # type: ignore[attr-defined]
                    [b.row() for b in blocks],
                )
            if rejections:
                s.execute(
                    InputRejectionRow.__table__.insert(),  # type: ignore[attr-defined]
                    [
                        {
                            "at": r.at,
                            "environment": r.environment,
                            "source": r.source,
                            "reason": r.reason,
                        }
                        for r in rejections
                    ],
                )

    def add_feedback(
        self, prediction_id: str, label: str, *, actor: str, token: str | None = None
    ) -> Feedback:
        """Record (or replace) the true label of a prediction and audit it as ``feedback``.
        The prediction need not be stored yet: feedback may overtake the buffered log, and is
        joined to its prediction whenever that lands (``get`` tells whether it has)."""
        feedback = Feedback(prediction_id, label, datetime.now(UTC), actor)
        with self.db.session() as s:
            serialize(s, f"feedback:{prediction_id}")
            held = s.get(FeedbackRow, prediction_id)
            details: dict[str, Any] = {"label": label, "token": token}
            if held is not None and held.label == label:
                # the same label again is no new knowledge: its time stays, so a retrain's
                # "labelled since the champion" does not count it afresh
                feedback = Feedback(prediction_id, label, aware(held.at), held.actor)
                details["unchanged"] = True
            else:
                s.merge(
                    FeedbackRow(
                        prediction_id=feedback.prediction_id,
                        label=feedback.label,
                        at=feedback.at,
                        actor=feedback.actor,
                    )
                )
            details["at"] = feedback.at.isoformat()  # the row's time, which audit verify checks
            record(s, actor=actor, action="feedback", subject=prediction_id, details=details)
        return feedback

    # -- reads ----------------------------------------------------------------------------
    def get(self, prediction_id: str) -> LoggedPrediction | None:
        with self.db.session() as s:
            row = s.get(PredictionRow, prediction_id)
            return _prediction(row) if row is not None else None

    def logged_in(self, environment: str) -> bool:
        """Whether any prediction was ever logged in ``environment`` (one index probe)."""
        query = select(PredictionRow.id).where(PredictionRow.environment == environment).limit(1)
        with self.db.session() as s:
            return s.scalar(query) is not None

    def feedback(self, prediction_id: str) -> Feedback | None:
        with self.db.session() as s:
            row = s.get(FeedbackRow, prediction_id)
            return _feedback(row) if row is not None else None

    def window(
        self,
        environment: str,
        *,
        since: datetime,
        until: datetime,
        model: str | None = None,
        version: int | None = None,
    ) -> list[Observed]:
        """Predictions logged for ``environment`` in [since, until), oldest first, with the
        feedback label of each where one arrived."""
        query = (
            select(*_COLUMNS, FeedbackRow.label.label("truth"))
            .outerjoin(FeedbackRow, FeedbackRow.prediction_id == PredictionRow.id)
            .where(PredictionRow.environment == environment)
            .where(PredictionRow.at >= since, PredictionRow.at < until)
            .order_by(PredictionRow.at, PredictionRow.id)
        )
        if model is not None:
            query = query.where(PredictionRow.model == model)
        if version is not None:
            query = query.where(PredictionRow.version == version)
        with self.db.session() as s:
            rows = s.execute(query).all()
        return [Observed(_prediction(r), r.truth) for r in rows]

    def columns(
        self,
        environment: str,
        *,
        since: datetime,
        until: datetime,
        model: str | None = None,
        version: int | None = None,
    ) -> PredictionColumns:
        """What ``window`` returns, as arrays for monitoring: from the columnar blocks
        (``kennel.db.predblocks``) where they hold every row of the window, else one SELECT of
        the typed columns (no JSON parsed, no object per row), plus one of the JSON of rows
        whose typed columns an older kennel left empty, if there are any."""
        filters = [  # a naive time is UTC here too (the driver sees the bounds unconverted)
            PredictionRow.environment == environment,
            PredictionRow.at >= aware(since),
            PredictionRow.at < aware(until),
        ]
        if model is not None:
            filters.append(PredictionRow.model == model)
        if version is not None:
            filters.append(PredictionRow.version == version)
        with self.db.session() as s:
            found = self._from_blocks(s, environment, filters, since, until, model, version)
            if found is not None:
                return found
            query = (
                select(*_WINDOW_COLUMNS)
                .outerjoin(FeedbackRow, FeedbackRow.prediction_id == PredictionRow.id)
                .where(*filters)
                .order_by(PredictionRow.at, PredictionRow.id)  # ties as the blocks order them
            )
            rows = fetch_tuples(s, query)
            legacy = None
            if None in map(itemgetter(PROBS_AT), rows):
                old = s.execute(
                    select(PredictionRow.id, PredictionRow.probabilities, PredictionRow.quality)
                    .where(*filters)
                    .where(PredictionRow.class_probs.is_(None))
                ).all()
                legacy = {r.id: (r.probabilities, r.quality) for r in old}
        return columns_of(rows, legacy)

    @staticmethod
    def _from_blocks(
        s: Any,
        environment: str,
        filters: list[Any],
        since: datetime,
        until: datetime,
        model: str | None,
        version: int | None,
    ) -> PredictionColumns | None:
        """The window from its blocks, with feedback joined; None where the blocks do not hold
        exactly the rows the filters count (rows stored before blocks were written)."""
        rows = s.execute(select(func.count()).select_from(PredictionRow).where(*filters)).scalar()
        b = PredictionBlockRow
        query = select(b.data).where(
            b.environment == environment,
            b.last_at >= aware(since),
            b.first_at < aware(until),
        )
        if model is not None:
            query = query.where(b.model == model)
        blobs = (row[0] for row in fetch_tuples(s, query.order_by(b.first_at)))
        found = window_of(blobs, since=since, until=until, version=version, rows=rows)
        if found is None or not rows:
            return found
        labels = fetch_tuples(
            s,
            select(FeedbackRow.prediction_id, FeedbackRow.label)  # type: ignore[arg-type]
            .join(PredictionRow, PredictionRow.id == FeedbackRow.prediction_id)
            .where(*filters),
        )
        if labels:
            at = {pid: i for i, pid in enumerate(found.ids)}
            for pid, label in labels:
                if pid in at:  # not a row stored after the blocks were read
                    found.truth[at[pid]] = label
        return found

    def labelled(self, environment: str) -> list[Observed]:
        """Predictions of ``environment`` whose input was kept and whose true label came back,
        oldest first."""
        query = (
            select(*_COLUMNS, FeedbackRow.label.label("truth"))
            .join(FeedbackRow, FeedbackRow.prediction_id == PredictionRow.id)
            .where(PredictionRow.environment == environment)
            .where(PredictionRow.input_sha256.is_not(None))
            .order_by(PredictionRow.at)
        )
        with self.db.session() as s:
            rows = s.execute(query).all()
        return [Observed(_prediction(r), r.truth) for r in rows]

    def count_labelled(self, environment: str, *, since: datetime) -> int:
        """Predictions of ``environment`` whose input was kept and whose true label arrived at
        or after ``since``: what a retrain could learn from that it has not seen."""
        with self.db.session() as s:
            count = s.scalar(
                select(func.count())
                .select_from(FeedbackRow)
                .join(PredictionRow, FeedbackRow.prediction_id == PredictionRow.id)
                .where(PredictionRow.environment == environment)
                .where(PredictionRow.input_sha256.is_not(None))
                .where(FeedbackRow.at >= since)
            )
        return int(count or 0)

    def search(self, query: PredictionQuery) -> tuple[list[SearchHit], bool]:
        """One page of the predictions ``query`` matches, newest first, and whether more
        follow. The query's span and page are capped (``PredictionQuery`` says how far)."""
        with self.db.session() as s:
            return search(s, query)

    def traffic(
        self, environment: str, *, since: datetime, until: datetime, buckets: int = 60
    ) -> list[TrafficBucket]:
        """Requests and latency of ``environment`` per time bucket of [since, until), counted
        by the database; buckets without a request are left out."""
        with self.db.session() as s:
            return traffic(s, environment, Buckets(since, until, buckets))

    def count_rejections(self, environment: str, *, since: datetime, until: datetime) -> int:
        """Inputs of ``environment`` refused in [since, until)."""
        with self.db.session() as s:
            count = s.scalar(
                select(func.count())
                .select_from(InputRejectionRow)
                .where(InputRejectionRow.environment == environment)
                .where(InputRejectionRow.at >= since, InputRejectionRow.at < until)
            )
        return int(count or 0)
