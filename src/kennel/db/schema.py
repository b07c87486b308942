"""ORM rows. They stay inside the storage layer; callers get frozen dataclasses instead.

Schema changes are Alembic migrations in ``migrations/versions``; this module must match head.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """A time, always UTC-aware on the way out, on every database. SQLite keeps a time as
    text without an offset and hands it back naive: it is written as UTC (an aware value is
    converted first, a naive one taken as UTC already) and read back with UTC attached."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: UTCDateTime(),
    }


class ItemRow(Base):
    """One distinct image content (by sha256) and its measured properties."""

    __tablename__ = "items"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    brightness: Mapped[float] = mapped_column(Float)
    contrast: Mapped[float] = mapped_column(Float)
    sharpness: Mapped[float] = mapped_column(Float)
    phash: Mapped[str] = mapped_column(String(16))


class DatasetRow(Base):
    __tablename__ = "datasets"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime]


class IngestRunRow(Base):
    """One ingest of one source into one dataset; resumable while status is 'running'."""

    __tablename__ = "ingest_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name"), index=True)
    source: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    parent_version: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    version_id: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)


class IngestRecordRow(Base):
    """What happened to one source file in one run: ingested (with its sha256) or quarantined."""

    __tablename__ = "ingest_records"
    # 0008: a run's records by status in file order (a version's quarantined files, paged)
    __table_args__ = (Index("ix_ingest_records_run_status_seq", "run_id", "status", "seq"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("ingest_runs.id"), primary_key=True)
    uri: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    attrs: Mapped[dict[str, Any]] = mapped_column(default=dict)


class LabelDisputeRow(Base):
    """One content (sha256) offered under two or more labels in one dataset's ingest, kept
    out of the dataset until someone settles which label is right (0014)."""

    __tablename__ = "label_disputes"

    dataset: Mapped[str] = mapped_column(String(128), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    labels: Mapped[list[str]] = mapped_column(JSON)  # every label it was offered under, sorted
    files: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # some: uri -> label
    run_id: Mapped[str] = mapped_column(String(32))  # the ingest run that first saw it
    seen_at: Mapped[datetime]
    settled_label: Mapped[str | None] = mapped_column(String(128))
    settled_by: Mapped[str | None] = mapped_column(String(128))
    settled_at: Mapped[datetime | None]


class FileStateRow(Base):
    """The content last read from a local file, by its path and the stat it had when read
    (size, mtime, ctime, inode, device): an ingest that finds the same stat reuses the
    sha256 instead of reading the file again (kennel.ingest.filestate)."""

    __tablename__ = "file_states"

    uri: Mapped[str] = mapped_column(Text, primary_key=True)
    stat: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    # the item's size, for the limits check (none: a state from before 0011 without an item)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)


class DatasetVersionRow(Base):
    """An immutable dataset version; ``id`` is the digest of its manifest's content."""

    __tablename__ = "dataset_versions"

    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[str | None] = mapped_column(String(64))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    ingest_run_id: Mapped[str | None] = mapped_column(ForeignKey("ingest_runs.id"))
    created_at: Mapped[datetime]
    n_rows: Mapped[int] = mapped_column(Integer)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # 0008: the version's index (kennel.datasets.index) in the content store; none before
    index_sha256: Mapped[str | None] = mapped_column(String(64))


class AuditRow(Base):
    """An append-only, hash-chained record of a state change."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128), index=True)  # 0007: the audit's filters
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class RunRow(Base):
    """A tracked training run: a tuning trial or a final (re)train, linked to its data."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # trial | final
    study: Mapped[str | None] = mapped_column(String(64), index=True)
    trial_number: Mapped[int | None] = mapped_column(Integer)
    dataset: Mapped[str] = mapped_column(String(128))
    dataset_version: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16))  # running | completed | pruned | failed
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    duration_s: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    git_commit: Mapped[str | None] = mapped_column(String(40))
    init_from: Mapped[str | None] = mapped_column(String(160))


class RunMetricRow(Base):
    __tablename__ = "run_metrics"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class ModelVersionRow(Base):
    """A registered model version: its bundle files (content addresses) and where it came from."""

    __tablename__ = "model_versions"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"))
    dataset: Mapped[str | None] = mapped_column(String(128))
    dataset_version: Mapped[str | None] = mapped_column(String(64))
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)  # file name -> sha256
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    gates_passed: Mapped[bool]
    gate_reasons: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(128))


class ModelAliasRow(Base):
    __tablename__ = "model_aliases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class AliasEventRow(Base):
    """Every alias move, kept forever: who, when, from which version to which, and why."""

    __tablename__ = "alias_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    # deploy | release | rollback | champion | set: what kind of move, as data (the policy and
    # rollback read this, never the free-text reason)
    kind: Mapped[str] = mapped_column(String(16), server_default="set")
    at: Mapped[datetime]


class PipelineStepRow(Base):
    """A finished pipeline step, keyed by the digest of its inputs (so unchanged steps skip)."""

    __tablename__ = "pipeline_steps"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    step: Mapped[str] = mapped_column(String(32))
    output: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]


class TokenRow(Base):
    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked: Mapped[bool] = mapped_column(default=False)


class CertificationRow(Base):
    """The verdict of an application test of a model version in an environment."""

    __tablename__ = "certifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    environment: Mapped[str] = mapped_column(String(64))
    passed: Mapped[bool]
    reasons: Mapped[dict[str, Any]] = mapped_column(default=dict)
    report_sha256: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime]


class ApprovalRow(Base):
    """A QA decision on a model version (continuous delivery's human gate)."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))  # approved | rejected
    actor: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]


class MonitorRunRow(Base):
    """One monitoring analysis of a window (integrity, drift, performance, fairness)."""

    __tablename__ = "monitor_runs"
    __table_args__ = (Index("ix_monitor_runs_environment_until", "environment", "until"),)  # 0007

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    environment: Mapped[str] = mapped_column(String(64), index=True)
    since: Mapped[datetime]
    until: Mapped[datetime]
    model: Mapped[str | None] = mapped_column(String(128))
    version: Mapped[int | None] = mapped_column(Integer)  # the most common of ``versions``
    # every version that served a prediction in the window, ascending (a release can fall
    # inside one); added by migration 0006
    versions: Mapped[list[int]] = mapped_column(JSON, default=list)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    report_sha256: Mapped[str | None] = mapped_column(String(64))


class AlertRow(Base):
    """An alert raised by a rule; one open alert per (rule, subject), counted, not repeated."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(128), index=True)
    subject: Mapped[str] = mapped_column(String(256))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)  # open | acknowledged | resolved
    metric: Mapped[str] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    first_at: Mapped[datetime]
    last_at: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer, default=1)
    resolved_at: Mapped[datetime | None]
    actions: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"log": [...outcomes]}
    run_id: Mapped[str | None] = mapped_column(
        String(32)
    )  # 0013: the monitoring run that opened it


class TelemetryRow(Base):
    """One sample of a host or device metric (psutil, or an MQTT sensor reading)."""

    __tablename__ = "telemetry"
    # 0007: covering for a metric's readings per time bucket
    __table_args__ = (Index("ix_telemetry_metric_at", "metric", "at", "source", "value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    source: Mapped[str] = mapped_column(String(128), index=True)  # host name or device id
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)


# the prediction log's rows, in a module of their own (they need Base, above)
from kennel.db.logschema import FeedbackRow as FeedbackRow  # noqa: E402
from kennel.db.logschema import InputRejectionRow as InputRejectionRow  # noqa: E402
from kennel.db.logschema import PredictionBlockRow as PredictionBlockRow  # noqa: E402
from kennel.db.logschema import PredictionRow as PredictionRow  # noqa: E402
