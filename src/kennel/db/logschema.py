"""ORM rows of the prediction log: served predictions, their columnar copy, the feedback
that arrives later and the inputs a service could not use. Part of ``kennel.db.schema``,
which imports them back at its end: import them from there (one import gives every row, and
this module needs ``Base`` defined first)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kennel.db.schema import Base


class PredictionRow(Base):
    """One served prediction (any pattern: API, camera, batch), written off the hot path."""

    __tablename__ = "predictions"
    # 0007: an environment's predictions by time, and covering for requests per time bucket
    __table_args__ = (Index("ix_predictions_environment_at", "environment", "at", "latency_ms"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    environment: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(128))
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    quality: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str] = mapped_column(String(256))
    latency_ms: Mapped[float] = mapped_column(Float)
    input_sha256: Mapped[str | None] = mapped_column(String(64))
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)  # float16, little-endian
    # 0009: what monitoring reads, typed (kennel.db.predcols); NULL in rows an older kennel
    # wrote after the upgrade, whose JSON is read instead
    class_names: Mapped[str | None] = mapped_column(Text)  # JSON list, the order of class_probs
    class_probs: Mapped[bytes | None] = mapped_column(LargeBinary)  # float64, little-endian
    brightness: Mapped[float | None] = mapped_column(Float)
    contrast: Mapped[float | None] = mapped_column(Float)
    sharpness: Mapped[float | None] = mapped_column(Float)
    width: Mapped[float | None] = mapped_column(Float)
    height: Mapped[float | None] = mapped_column(Float)
    pet: Mapped[float | None] = mapped_column(Float)  # 1.0 pet, 0.0 none, NULL unjudged


class PredictionBlockRow(Base):
    """A columnar copy of a batch of prediction rows (kennel.db.predblocks), read by monitoring
    windows; written with the rows it copies (0012)."""

    __tablename__ = "prediction_blocks"
    __table_args__ = (Index("ix_prediction_blocks_environment_last_at", "environment", "last_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    environment: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    first_at: Mapped[datetime]
    last_at: Mapped[datetime]
    rows: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)  # Arrow IPC stream


class FeedbackRow(Base):
    """The true label for a prediction, arriving late; no foreign key on purpose: feedback may
    reach the database before the buffered prediction log line does."""

    __tablename__ = "feedback"

    prediction_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))


class InputRejectionRow(Base):
    """An input a service or camera could not use (not an image, truncated, a bomb...)."""

    __tablename__ = "input_rejections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    environment: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
