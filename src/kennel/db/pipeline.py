"""Finished pipeline steps, keyed by the digest of their inputs (so unchanged steps skip)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kennel.db import Database, aware
from kennel.db.schema import PipelineStepRow


@dataclass(frozen=True)
class PipelineStep:
    key: str  # sha256 of everything the step depended on
    step: str  # ingest, build, ...
    output: dict[str, Any]  # what the step produced, as JSON
    created_at: datetime


class PipelineStepStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str) -> PipelineStep | None:
        with self.db.session() as s:
            row = s.get(PipelineStepRow, key)
            if row is None:
                return None
            return PipelineStep(row.key, row.step, dict(row.output), aware(row.created_at))

    def put(self, step: PipelineStep) -> None:
        """Record a finished step; a step run again under the same key replaces the record."""
        with self.db.session() as s:
            s.merge(
                PipelineStepRow(
                    key=step.key, step=step.step, output=step.output, created_at=step.created_at
                )
            )
