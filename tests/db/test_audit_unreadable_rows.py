"""A row edited by hand into what its column types cannot read (SQLite keeps anything in any
column) is an altered entry: ``audit verify`` says so, and every list of entries (CLI and
dashboard) still shows the log instead of failing on the very row that was tampered with."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db.audit import AuditLog
from kennel.ui.app import create_app
from kennel.wiring import Workspace
from tests.conftest import make_project

runner = CliRunner()


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace(make_project(tmp_path / "p"))
    for i in range(4):
        AuditLog(workspace.db).append(actor="keeper", action="feedback", subject=f"p{i}")
    yield workspace
    workspace.close()


def _raw(ws: Workspace, sql: str) -> None:
    """What someone with the database file and the sqlite3 shell can do."""
    with ws.db.session() as s:
        s.execute(text(sql))


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        ("details = 'not json{'", "its details 'not json{' are no JSON object"),
        ("details = '[1, 2]'", "its details '[1, 2]' are no JSON object"),
        ("at = 'garbage'", "its time 'garbage' is no time"),
        ("at = 12345", "its time '12345' is no time"),
    ],
)
def test_an_unreadable_row_is_an_altered_entry(ws: Workspace, edit: str, why: str) -> None:
    _raw(ws, f"UPDATE audit_log SET {edit} WHERE seq = 3")
    verdict = AuditLog(ws.db).verify()
    assert not verdict.ok and verdict.checked == 2
    assert verdict.problem == f"entry 3 was altered after it was written: {why}"
    root = str(ws.project.root)
    checked = runner.invoke(app, ["audit", "verify", "-C", root])
    assert checked.exit_code == 1
    assert checked.stderr.strip().splitlines() == [
        f"error: audit log broken: entry 3 was altered after it was written: {why}"
    ]
    listed = runner.invoke(app, ["audit", "log", "--json", "-C", root])
    assert listed.exit_code == 0, listed.output
    seqs = [e["seq"] for e in json.loads(listed.stdout)]
    assert sorted(seqs) == [1, 2, 3, 4]  # the altered entry is listed with the rest


def test_the_dashboard_shows_the_log_and_the_broken_chain(ws: Workspace) -> None:
    from tests.ui.test_origins import client_of, serving, sign_in

    token, _ = ws.tokens.create("viewer", "vera")
    _raw(ws, "UPDATE audit_log SET details = 'not json{', at = 'garbage' WHERE seq = 2")
    with serving(create_app(ws)) as url, client_of(url) as client:
        sign_in(client, token)
        for path in ("/", "/audit"):
            page = client.get(path)
            assert page.status_code == 200, (path, page.text[:300])
            assert "BROKEN" in page.text
        assert re.search(r"entry 2 was altered after it was written: its time", page.text)
