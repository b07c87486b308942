"""The dashboard's audit verdict: the whole chain verified at first and every ``full_s``, only
the new entries in between (no browser: a fresh project)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from kennel.db.audit import AuditLog
from kennel.db.schema import AuditRow
from kennel.ui.app import create_app
from kennel.ui.logs import AuditStatus
from kennel.wiring import Workspace
from tests.conftest import make_project


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace(make_project(tmp_path / "p"))
    yield workspace
    workspace.close()


def append(ws: Workspace, n: int) -> None:
    for i in range(n):
        AuditLog(ws.db).append(actor="keeper", action="test.note", subject=f"p{i}")


def tamper(ws: Workspace, seq: int) -> None:
    with ws.db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.seq == seq).values(subject="forged"))


def test_new_entries_are_checked_from_the_last_verified_one(ws: Workspace) -> None:
    status = AuditStatus(ttl_s=0, full_s=3600)
    append(ws, 5)
    assert (status.verdict(ws).ok, status.verdict(ws).checked) == (True, 5)
    append(ws, 3)
    assert (status.verdict(ws).ok, status.verdict(ws).checked) == (True, 8)
    # an entry verified before is only read again by the next full verification ...
    tamper(ws, 2)
    append(ws, 1)
    assert status.verdict(ws).ok
    # ... which a fresh status (or kennel audit verify) does at once
    full = AuditStatus(ttl_s=0, full_s=3600).verdict(ws)
    assert not full.ok and full.problem == "entry 2 was altered after it was written"
    assert not AuditLog(ws.db).verify().ok


def test_a_changed_last_entry_or_an_elapsed_period_means_a_full_verification(
    ws: Workspace,
) -> None:
    status = AuditStatus(ttl_s=0, full_s=3600)
    append(ws, 4)
    assert status.verdict(ws).ok
    tamper(ws, 4)  # the entry the next check would start from
    broken = status.verdict(ws)
    assert not broken.ok and broken.problem == "entry 4 was altered after it was written"
    periodic = AuditStatus(ttl_s=0, full_s=0.05)
    with ws.db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.seq == 4).values(subject="p3"))
    assert periodic.verdict(ws).ok
    tamper(ws, 1)
    time.sleep(0.1)
    assert not periodic.verdict(ws).ok


def test_the_pages_say_when_the_chain_was_checked_and_verify_now_checks_it_all(
    ws: Workspace,
) -> None:
    from tests.ui.test_origins import client_of, serving, sign_in

    token, _ = ws.tokens.create("viewer", "vera")
    append(ws, 3)
    with serving(create_app(ws)) as url, client_of(url) as client:
        sign_in(client, token)
        page = client.get("/audit").text
        assert re.search(r"whole chain verified at \d\d:\d\d UTC; new entries checked at", page)
        tamper(ws, 2)
        append(ws, 1)
        assert "BROKEN" not in client.get("/audit").text  # only the new entries were checked
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        assert client.post("/actions/verify-audit", data={"back": "/audit"}).status_code == 403
        done = client.post("/actions/verify-audit", data={"csrf": csrf[1], "back": "/audit"})
        assert done.status_code == 303 and done.headers["location"] == "/audit"
        after = client.get("/audit").text
        assert "audit chain BROKEN: entry 2 was altered" in after
        assert '<span class="bad">BROKEN</span>' in after
        newest = AuditLog(ws.db).entries(limit=1)[0]
        assert newest.action == "audit.verify"
        assert newest.actor == "vera" and '"ok": false' in json.dumps(newest.details)
        # clicked again and again (any role may): the verification a moment ago answers, and
        # nothing more is appended to the log
        for _ in range(5):
            again = client.post("/actions/verify-audit", data={"csrf": csrf[1], "back": "/audit"})
            assert again.status_code == 303
        assert AuditLog(ws.db).entries(limit=1)[0].seq == newest.seq
        assert "BROKEN" in client.get("/").text  # the Overview says so too
