"""Rows the deploy path trusts (QA decisions, certifications, a version's gates and files,
tokens, aliases) are checked by ``audit verify`` against what the chain recorded when kennel
wrote them: an edit made with only the database file is named, where before the chain said
"intact" while a release went through on a forged approval."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, update
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db.audit import AuditLog
from kennel.db.deployments import CertificationVerdict, DeploymentStore
from kennel.db.registry import RegistryStore
from kennel.db.schema import (
    ApprovalRow,
    CertificationRow,
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
            metrics={},
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
        "the approvals table holds a QA decision the audit log does not: pets@2 approved by "
        "quinn (qa)",
    ),
    (
        "a rejection deleted",
        lambda ws: delete(ApprovalRow).where(ApprovalRow.decision == "rejected"),
        "a QA decision in the audit log is missing from the approvals table: pets@2 rejected",
    ),
    (
        "a rejection turned into an approval",
        lambda ws: update(ApprovalRow).where(ApprovalRow.version == 2).values(decision="approved"),
        "the approvals table holds a QA decision the audit log does not: pets@2 approved",
    ),
    (
        "a failed certification passed",
        lambda ws: (
            update(CertificationRow).where(CertificationRow.version == 2).values(passed=True)
        ),
        "the certifications table holds a certification of pets@2 in staging (passed)",
    ),
    (
        "failed gates marked passed",
        lambda ws: (
            update(ModelVersionRow).where(ModelVersionRow.version == 2).values(gates_passed=True)
        ),
        "model version pets@2 is marked gates passed, the audit log says failed",
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
