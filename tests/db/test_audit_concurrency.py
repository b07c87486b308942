"""Appenders racing on one SQLite project (threads with their own connections, as separate
processes would be) never collide on the chain's sequence numbers."""

from __future__ import annotations

import threading
from pathlib import Path

from kennel.db.audit import verify
from kennel.wiring import Workspace
from tests.conftest import make_project


def test_concurrent_audit_appends_on_sqlite(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    setup = Workspace(project)
    token, _ = setup.tokens.create("operator", "ops")
    setup.close()
    failures: list[BaseException] = []

    def sign_in(n: int) -> None:
        ws = Workspace(project)  # its own engine and connections
        try:
            for i in range(n):
                ws.tokens.login(token if i % 2 else "kn_bogus_token", via="test")
        except BaseException as exc:
            failures.append(exc)
        finally:
            ws.close()

    threads = [threading.Thread(target=sign_in, args=(60,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    ws = Workspace(project)
    try:
        with ws.db.session() as s:
            verdict = verify(s)
    finally:
        ws.close()
    assert verdict.ok and verdict.checked == 1 + 3 * 60
