"""Deployment decisions: the verdicts of application tests (certifications) and QA's approvals
and rejections. Each write appends its audit entry in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from kennel.db import Database, aware
from kennel.db.audit import record
from kennel.db.locking import serialize
from kennel.db.schema import ApprovalRow, CertificationRow


@dataclass(frozen=True)
class CertificationVerdict:
    """The recorded verdict of an application test of a model version in an environment."""

    model: str
    version: int
    environment: str
    passed: bool
    reasons: list[str]
    report_sha256: str | None
    summary: dict[str, Any]
    at: datetime
    id: int | None = None  # assigned when stored


@dataclass(frozen=True)
class Approval:
    """A QA decision on a model version; ``actor`` reads "name (role)"."""

    model: str
    version: int
    decision: str  # approved | rejected
    actor: str
    note: str
    at: datetime
    id: int | None = None  # assigned when stored


def _verdict(row: CertificationRow) -> CertificationVerdict:
    return CertificationVerdict(
        model=row.model,
        version=row.version,
        environment=row.environment,
        passed=row.passed,
        reasons=list(row.reasons.get("reasons", [])),
        report_sha256=row.report_sha256,
        summary=dict(row.summary),
        at=aware(row.at),
        id=row.id,
    )


def _approval(row: ApprovalRow) -> Approval:
    return Approval(
        row.model, row.version, row.decision, row.actor, row.note, aware(row.at), row.id
    )


class DeploymentStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- certifications -------------------------------------------------------------------
    def add_certification(
        self, verdict: CertificationVerdict, *, actor: str
    ) -> CertificationVerdict:
        """Store ``verdict`` and audit it as ``model.certify``; returns it with its id."""
        with self.db.session() as s:
            row = CertificationRow(
                model=verdict.model,
                version=verdict.version,
                environment=verdict.environment,
                passed=verdict.passed,
                reasons={"reasons": list(verdict.reasons)},
                report_sha256=verdict.report_sha256,
                summary=verdict.summary,
                at=verdict.at,
            )
            s.add(row)
            s.flush()
            record(
                s,
                actor=actor,
                action="model.certify",
                subject=f"{verdict.model}@{verdict.version}",
                details={
                    "environment": verdict.environment,
                    "passed": verdict.passed,
                    "reasons": list(verdict.reasons),
                    "report": verdict.report_sha256,
                },
            )
            return replace(verdict, id=row.id)

    def latest_certification(
        self, model: str, version: int, environment: str
    ) -> CertificationVerdict | None:
        """The newest certification of ``model@version`` in ``environment``."""
        with self.db.session() as s:
            row = s.scalars(
                select(CertificationRow)
                .where(
                    CertificationRow.model == model,
                    CertificationRow.version == version,
                    CertificationRow.environment == environment,
                )
                .order_by(CertificationRow.id.desc())
            ).first()
            return _verdict(row) if row is not None else None

    def certifications(self, model: str, version: int) -> list[CertificationVerdict]:
        """Every certification of ``model@version``, in every environment, oldest first."""
        with self.db.session() as s:
            rows = s.scalars(
                select(CertificationRow)
                .where(CertificationRow.model == model, CertificationRow.version == version)
                .order_by(CertificationRow.id)
            )
            return [_verdict(r) for r in rows]

    def certification_history(
        self, model: str, *, environment: str | None = None, limit: int = 50
    ) -> list[CertificationVerdict]:
        """The newest ``limit`` certifications of any version of ``model`` (in
        ``environment``, or in any), newest first: what the application test said, when."""
        query = (
            select(CertificationRow)
            .where(CertificationRow.model == model)
            .order_by(CertificationRow.id.desc())
            .limit(limit)
        )
        if environment is not None:
            query = query.where(CertificationRow.environment == environment)
        with self.db.session() as s:
            return [_verdict(r) for r in s.scalars(query)]

    # -- QA decisions ---------------------------------------------------------------------
    def add_approval(
        self,
        model: str,
        version: int,
        decision: str,
        *,
        actor: str,
        role: str,
        note: str,
        token: str | None = None,
    ) -> Approval:
        """Record QA's ``decision`` (approved | rejected) by ``actor`` in ``role`` and audit
        it as ``model.<decision>``. The same decision with the same note (the same words,
        whatever the blanks between them) by the same person, when it is the newest one on the
        version already (a double click, a page posted again), is that decision: it is
        returned and nothing new is recorded."""
        with self.db.session() as s:
            # after any alias move being checked against the policy now (``move_alias``): a
            # rejection never slips in between that check and the move
            serialize(s, f"policy:{model}")
            serialize(s, f"approval:{model}@{version}")  # two clicks at once: one is recorded
            newest = s.scalars(
                select(ApprovalRow)
                .where(ApprovalRow.model == model, ApprovalRow.version == version)
                .order_by(ApprovalRow.id.desc())
            ).first()
            signed = f"{actor} ({role})"
            # the same words: a note posted again with other blanks (a form's trailing newline)
            if newest is not None and (newest.decision, newest.actor, newest.note.split()) == (
                decision,
                signed,
                note.split(),
            ):
                return _approval(newest)
            row = ApprovalRow(
                model=model,
                version=version,
                decision=decision,
                actor=signed,
                note=note,
                at=datetime.now(UTC),
            )
            s.add(row)
            s.flush()
            record(
                s,
                actor=actor,
                action=f"model.{decision}",
                subject=f"{model}@{version}",
                # which token decided: names are not unique (as for every alias move)
                details={"note": note, "role": role, "token": token},
            )
            return _approval(row)

    def latest_approval(self, model: str, version: int) -> Approval | None:
        """QA's newest decision on ``model@version``, if any."""
        with self.db.session() as s:
            row = s.scalars(
                select(ApprovalRow)
                .where(ApprovalRow.model == model, ApprovalRow.version == version)
                .order_by(ApprovalRow.id.desc())
            ).first()
            return _approval(row) if row is not None else None

    def approvals(self, model: str, version: int) -> list[Approval]:
        """Every QA decision on ``model@version``, oldest first."""
        with self.db.session() as s:
            rows = s.scalars(
                select(ApprovalRow)
                .where(ApprovalRow.model == model, ApprovalRow.version == version)
                .order_by(ApprovalRow.id)
            )
            return [_approval(r) for r in rows]
