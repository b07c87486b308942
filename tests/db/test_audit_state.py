"""Rows the deploy path trusts (QA decisions, certifications, a version's gates and files,
tokens, aliases) are checked by ``audit verify`` against what the chain recorded when kennel
wrote them: an edit made with only the database file is named, where before the chain said
"intact" while a release went through on a forged approval."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, text, update
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db.alerts import AlertRecords, RuleVerdict
from kennel.db.audit import AuditLog
from kennel.db.deployments import CertificationVerdict, DeploymentStore
from kennel.db.disputes import Offer
from kennel.db.ingest import IngestStore
from kennel.db.predictions import PredictionStore
from kennel.db.registry import RegistryStore
from kennel.db.schema import (
    AlertRow,
    AliasEventRow,
    ApprovalRow,
    CertificationRow,
    FeedbackRow,
    LabelDisputeRow,
    ModelAliasRow,
    ModelVersionRow,
    TokenRow,
)
from kennel.wiring import Workspace
from tests.conftest import make_project

runner = CliRunner()


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """Two versions of pets (2 failed its gates), 1 certified, approved and in production, 2
    certified and rejected; an admin and a viewer token."""
    workspace = Workspace(make_project(tmp_path / "p"))
    registry, deployments = RegistryStore(workspace.db), DeploymentStore(workspace.db)
    for passed in (True, False):
        registry.add_version(
            "pets",
            lambda v: {"model.onnx": f"{v:064x}"},
            run_id=None,
            dataset="pets",
            dataset_version=None,
            metrics={"accuracy": 0.9 if passed else 0.4, "ece": float("nan")},
            gates_passed=passed,
            gate_reasons=[] if passed else ["below the majority baseline"],
            actor="kennel",
        )
    for version, decision in ((1, "approved"), (2, "rejected")):
        deployments.add_certification(
            CertificationVerdict(
                "pets", version, "staging", version == 1, [], None, {}, datetime.now(UTC)
            ),
            actor="kennel",
        )
        deployments.add_approval(
            "pets", version, decision, actor="quinn", role="qa", note="looked at it"
        )
    registry.move_alias(
        "pets", "production", 1, actor="olga", reason="r", kind="release", token=None
    )
    workspace.tokens.create("admin", "ada")
    workspace.tokens.create("viewer", "vic")
    feedback = PredictionStore(workspace.db)
    feedback.add_feedback("p1", "cat", actor="olga")
    feedback.add_feedback("p1", "cat", actor="quinn")  # the same again: olga's stays
    feedback.add_feedback("p2", "cat", actor="olga")
    feedback.add_feedback("p2", "dog", actor="quinn")  # changed: quinn's now
    alerts = AlertRecords(workspace.db)
    verdict = RuleVerdict("acc", "critical", "performance.accuracy", 0.5, 0.9, "low", True)
    (opened,) = alerts.apply([verdict], subject="production", actor="monitor").opened
    alerts.note_action(opened.id, "rollback", "skipped: mixed window", actor="monitor")
    alerts.set_state(opened.id, "acknowledged", actor="olga", note="on it")
    offer = Offer(frozenset({"cat", "dog"}), {"/lake/a.jpg": "cat", "/lake/b.jpg": "dog"})
    IngestStore(workspace.db).dispute("pets", {"a" * 64: offer}, "r1", actor="kennel")
    yield workspace
    workspace.close()


def _edit(ws: Workspace, statement: object) -> None:
    with ws.db.session() as s:
        s.execute(statement)  # type: ignore[call-overload]


def _problem(ws: Workspace) -> str | None:
    verdict = AuditLog(ws.db).verify()
    assert verdict.ok == (verdict.problem is None)
    return verdict.problem


def test_an_untouched_project_verifies(ws: Workspace) -> None:
    assert _problem(ws) is None
    assert AuditLog(ws.db).verify().checked >= 9


AT = datetime(2026, 12, 3, 12, tzinfo=UTC)
EDITS: list[tuple[str, Callable[[Workspace], object], str]] = [
    (
        "a forged approval",
        lambda ws: insert(ApprovalRow).values(
            model="pets", version=2, decision="approved", actor="quinn (qa)", note="x", at=AT
        ),
        "the QA decisions of pets@2 differ from the audit log's (rejected by quinn (qa) looked "
        "at it, approved by quinn (qa) x against rejected by quinn (qa) looked at it)",
    ),
    (
        "a rejection deleted",
        lambda ws: delete(ApprovalRow).where(ApprovalRow.decision == "rejected"),
        "the QA decisions of pets@2 differ from the audit log's (none against rejected",
    ),
    (
        "a rejection turned into an approval",
        lambda ws: update(ApprovalRow).where(ApprovalRow.version == 2).values(decision="approved"),
        "the QA decisions of pets@2 differ from the audit log's (approved by",
    ),
    (
        "a failed certification passed",
        lambda ws: (
            update(CertificationRow).where(CertificationRow.version == 2).values(passed=True)
        ),
        "the certifications of pets@2 in staging differ from the audit log's (passed None "
        "against failed None)",
    ),
    (
        "failed gates marked passed",
        lambda ws: (
            update(ModelVersionRow).where(ModelVersionRow.version == 2).values(gates_passed=True)
        ),
        "model version pets@2's gates passed differ from those it was registered with",
    ),
    (
        "a model's file swapped",
        lambda ws: (
            update(ModelVersionRow)
            .where(ModelVersionRow.version == 1)
            .values(files={"model.onnx": "f" * 64})
        ),
        "model version pets@1's files differ from those it was registered with",
    ),
    (
        "two QA decisions swapped",
        lambda ws: update(ApprovalRow).where(ApprovalRow.version == 1).values(decision="rejected"),
        "the QA decisions of pets@1 differ from the audit log's (rejected by",
    ),
    (
        "a move slipped into the alias history",
        lambda ws: insert(AliasEventRow).values(
            name="pets",
            alias="production",
            from_version=1,
            to_version=2,
            actor="olga",
            reason="r",
            kind="release",
            at=AT,
        ),
        "the alias moves of pets@production differ from the audit log's",
    ),
    (
        "a move's kind changed",
        lambda ws: update(AliasEventRow).values(kind="rollback"),
        "the alias moves of pets@production differ from the audit log's (None -> 1 rollback",
    ),
    (
        "the champion's accuracy lowered",
        lambda ws: (
            update(ModelVersionRow)
            .where(ModelVersionRow.version == 1)
            .values(metrics={"accuracy": 0.01})
        ),
        "model version pets@1's metrics differ from those it was registered with",
    ),
    (
        "a version deleted",
        lambda ws: delete(ModelVersionRow).where(ModelVersionRow.version == 2),
        "model version pets@2, registered in the audit log, was deleted",
    ),
    (
        "a certification edited into what no type reads",
        lambda ws: text("UPDATE certifications SET passed = 'x' WHERE version = 2"),
        "the certifications of pets@2 in staging differ from the audit log's (unreadable 'x'",
    ),
    (
        "a version's files edited into no JSON",
        lambda ws: text("UPDATE model_versions SET files = '[' WHERE version = 1"),
        "a row of the versions cannot be read (",
    ),
    (
        "production pointed elsewhere",
        lambda ws: update(ModelAliasRow).values(version=2),
        "alias pets@production points to version 2, its last move in the audit log to version 1",
    ),
    (
        "a viewer made admin",
        lambda ws: update(TokenRow).where(TokenRow.name == "vic").values(role="admin"),
        "is 'vic' (admin), the audit log made it 'vic' (viewer)",
    ),
    (
        "a token slipped in",
        lambda ws: insert(TokenRow).values(
            id="tok_forged", name="eve", role="admin", hash="e" * 64, created_at=AT, revoked=False
        ),
        "token tok_forged (admin) has no token.create entry",
    ),
    (
        "a feedback label flipped",
        lambda ws: update(FeedbackRow).where(FeedbackRow.label == "dog").values(label="cat"),
        "feedback for prediction p2 is 'cat' by quinn, the audit log's 'dog' by quinn",
    ),
    (
        "feedback slipped in",
        lambda ws: insert(FeedbackRow).values(prediction_id="p9", label="dog", actor="olga", at=AT),
        "feedback for prediction p9 has no feedback entry",
    ),
    (
        "feedback deleted",
        lambda ws: delete(FeedbackRow).where(FeedbackRow.prediction_id == "p1"),
        "feedback for prediction p1, in the audit log, was deleted",
    ),
    (
        "feedback's sender changed",
        lambda ws: update(FeedbackRow).where(FeedbackRow.prediction_id == "p1").values(actor="ada"),
        "feedback for prediction p1 is 'cat' by ada, the audit log's 'cat' by olga",
    ),
    (
        "feedback's time moved (a retrain counts labels since the champion)",
        lambda ws: update(FeedbackRow).where(FeedbackRow.prediction_id == "p2").values(at=AT),
        "feedback for prediction p2 is dated 2026-12-03 12:00:00",
    ),
    (
        "an alert's first time moved (a retrain's window)",
        lambda ws: update(AlertRow).values(first_at=AT),
        "alert 1 was first seen 2026-12-03 12:00:00",
    ),
    (
        "an alert's run changed",
        lambda ws: update(AlertRow).values(run_id="r" * 32),
        "alert 1's run_id is",
    ),
    (
        "a dispute settled in the database",
        lambda ws: update(LabelDisputeRow).values(settled_label="dog", settled_by="eve"),
        f"label dispute pets:{'a' * 64} is settled as 'dog' by eve, the audit log's none",
    ),
    (
        "a dispute's files pointed elsewhere (settling by a file's uri reads them)",
        lambda ws: update(LabelDisputeRow).values(files={"/lake/c.jpg": "cat"}),
        f"label dispute pets:{'a' * 64}'s labels or files differ from the audit log's",
    ),
    (
        "a dispute deleted (its picture would be taken under one label)",
        lambda ws: delete(LabelDisputeRow),
        f"label dispute pets:{'a' * 64}, recorded in the audit log, was deleted",
    ),
    (
        "a dispute's first time moved",
        lambda ws: update(LabelDisputeRow).values(seen_at=AT),
        f"label dispute pets:{'a' * 64}'s first run or time differ",
    ),
    (
        "an alert resolved in the database",
        lambda ws: update(AlertRow).values(state="resolved"),
        'alert 1\'s state is "resolved", the audit log\'s "acknowledged"',
    ),
    (
        "an alert's actions cleared",
        lambda ws: update(AlertRow).values(actions={}),
        """alert 1's actions is {}, the audit log's {"rollback": "skipped: mixed window"}""",
    ),
    (
        "an alert slipped in",
        lambda ws: insert(AlertRow).values(
            rule="acc",
            subject="staging",
            severity="critical",
            state="open",
            metric="m",
            value=0.1,
            threshold=0.9,
            message="m",
            first_at=AT,
            last_at=AT,
            count=1,
            actions={},
        ),
        "alert 2 (acc) has no alert.open entry",
    ),
    (
        "an alert deleted",
        lambda ws: delete(AlertRow),
        "alert 1, opened in the audit log, was deleted",
    ),
    (
        "a token's secret swapped",
        lambda ws: update(TokenRow).where(TokenRow.name == "vic").values(hash="e" * 64),
        "'s secret was swapped in the database directly",
    ),
]


@pytest.mark.parametrize(("what", "statement", "said"), EDITS, ids=[e[0] for e in EDITS])
def test_an_edit_of_a_trusted_row_is_named(
    ws: Workspace, what: str, statement: Callable[[Workspace], object], said: str
) -> None:
    _edit(ws, statement(ws))
    problem = _problem(ws)
    assert problem is not None and said in problem, (what, problem)
    result = runner.invoke(app, ["audit", "verify", "-C", str(ws.project.root)])
    assert result.exit_code == 1 and said in result.stderr


def test_a_revoked_token_made_live_again_is_named(ws: Workspace) -> None:
    vic = str(next(t["id"] for t in ws.tokens.all() if t["name"] == "vic"))
    assert ws.tokens.revoke(vic, actor="ada")
    assert _problem(ws) is None
    _edit(ws, update(TokenRow).where(TokenRow.id == vic).values(revoked=False))
    assert _problem(ws) == f"token {vic} was revoked, and made live again in the database directly"


def test_two_decisions_on_one_version_swapped_in_order_are_named(ws: Workspace) -> None:
    """The policy reads the newest decision: swapping an earlier approval with a later
    rejection (the same rows, in another order) let a rejected version be released while a
    check of the decisions as a set said "intact"."""
    DeploymentStore(ws.db).add_approval("pets", 1, "rejected", actor="quinn", role="qa", note="no")
    assert _problem(ws) is None
    with ws.db.session() as s:
        s.execute(text("UPDATE approvals SET decision = 'x' WHERE decision = 'approved'"))
        s.execute(text("UPDATE approvals SET decision = 'approved' WHERE note = 'no'"))
        s.execute(
            text("UPDATE approvals SET decision = 'rejected', note = 'no' WHERE decision = 'x'")
        )
        s.execute(
            text(
                "UPDATE approvals SET note = 'looked at it' "
                "WHERE decision = 'approved' AND version = 1"
            )
        )
    problem = _problem(ws)
    assert problem is not None and problem.startswith("the QA decisions of pets@1 differ"), problem
