"""`kennel audit verify` against the anchor kept in the artifact store: deleting the newest
entries, or rewriting the chain from entry 1 and rehashing every entry with the chain's own
hashing, is found; an untouched project verifies."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import delete, func, select, update
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db.audit import GENESIS, entry_hash
from kennel.db.schema import AuditRow
from kennel.wiring import Workspace

runner = CliRunner()


def _project_with_entries(root: Path, n: int = 4) -> Path:
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    for i in range(n):
        created = runner.invoke(
            app, ["token", "create", "--role", "viewer", "--name", f"v{i}", "-C", str(root)]
        )
        assert created.exit_code == 0, created.output
    return root


def _verify(root: Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["audit", "verify", "-C", str(root)])
    return result.exit_code, result.stdout, result.stderr


def test_an_untouched_project_verifies_against_its_anchor(tmp_path: Path) -> None:
    root = _project_with_entries(tmp_path / "p")
    code, out, _err = _verify(root)
    assert code == 0 and "intact: 4 entries verified, 4 of them against the anchor" in out
    verdict = json.loads(runner.invoke(app, ["audit", "verify", "--json", "-C", str(root)]).stdout)
    assert verdict == {"ok": True, "checked": 4, "anchored": 4, "problem": None}


def test_deleting_the_newest_entries_is_detected(tmp_path: Path) -> None:
    root = _project_with_entries(tmp_path / "p")
    ws = Workspace.load(root)
    with ws.db.session() as s:  # what someone with only database access can do
        newest = s.scalar(select(func.max(AuditRow.seq)))
        s.execute(delete(AuditRow).where(AuditRow.seq == newest))
    ws.close()
    code, _out, err = _verify(root)
    assert code == 1
    assert err.strip().splitlines() == [
        "error: audit log broken: entries 4..4 were deleted: the anchor records 4 entries, "
        "the log holds 3"
    ]


def test_rewriting_and_rehashing_the_whole_chain_is_detected(tmp_path: Path) -> None:
    root = _project_with_entries(tmp_path / "p")
    ws = Workspace.load(root)
    with ws.db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.seq == 1).values(actor="mallory"))
        prev = GENESIS
        for row in s.scalars(select(AuditRow).order_by(AuditRow.seq)).all():
            digest = entry_hash(
                row.seq, row.at, row.actor, row.action, row.subject, row.details, prev
            )
            row.prev_hash, row.hash, prev = prev, digest, digest
    ws.close()
    code, _out, err = _verify(root)
    assert code == 1
    assert err.strip().splitlines() == [
        "error: audit log broken: entry 1 does not match its anchor: the chain was rewritten "
        "from there (or the anchor was damaged)"
    ]


def _anchors(root: Path) -> list[Path]:
    return sorted((root / ".kennel" / "artifacts" / "audit" / "anchors").glob("*"))


def test_deleting_every_anchor_is_detected(tmp_path: Path) -> None:
    root = _project_with_entries(tmp_path / "p")
    for path in _anchors(root):
        path.unlink()
    code, _out, err = _verify(root)
    assert code == 1 and "none of the 4 entries has an anchor" in err
    allowed = runner.invoke(app, ["audit", "verify", "--allow-unanchored", "-C", str(root)])
    assert allowed.exit_code == 0, allowed.output  # a log from before anchoring, on purpose


def test_an_unreadable_anchor_is_a_verdict_not_a_traceback(tmp_path: Path) -> None:
    root = _project_with_entries(tmp_path / "p")
    newest = _anchors(root)[-1]
    newest.chmod(0o644)
    newest.write_bytes(b"\x00 not json")
    code, _out, err = _verify(root)
    assert code == 1 and "does not match its anchor" in err and "Traceback" not in err


def test_an_entry_slipped_into_the_database_is_detected(tmp_path: Path) -> None:
    """A forged row chained correctly onto the head, and then a real action on top of it."""
    from datetime import UTC, datetime

    root = _project_with_entries(tmp_path / "p")
    ws = Workspace.load(root)
    with ws.db.session() as s:
        head = s.scalars(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).one()
        at, details = datetime.now(UTC), {"note": "looks fine"}
        entry = {"actor": "quinn", "action": "model.approved", "subject": "pets@3"}
        digest = entry_hash(head.seq + 1, at, **entry, details=details, prev=head.hash)
        s.add(AuditRow(seq=head.seq + 1, at=at, **entry, details=details, prev_hash=head.hash,
                       hash=digest))  # fmt: skip
    ws.close()
    code, _out, err = _verify(root)
    assert code == 1 and "entry 5 has no anchor" in err
    ws = Workspace.load(root)
    ws.tokens.create("viewer", "later")  # a real, anchored entry on top of the forged one
    ws.close()
    code, _out, err = _verify(root)
    assert code == 1 and "entry 5 has no anchor" in err


def test_entries_slipped_in_before_the_first_are_detected(tmp_path: Path) -> None:
    """Rows numbered 0 or below passed verify (it read from entry 1 on) while the log and the
    compliance report listed them as real entries."""
    from datetime import UTC, datetime

    root = _project_with_entries(tmp_path / "p")
    ws = Workspace.load(root)
    with ws.db.session() as s:
        for seq in (0, -5):
            s.add(AuditRow(seq=seq, at=datetime.now(UTC), actor="ceo", action="release",
                           subject="pets@2", details={}, prev_hash="0", hash="0"))  # fmt: skip
    ws.close()
    code, _out, err = _verify(root)
    assert code == 1
    assert "entry -5 lies before the chain's first entry" in err


def test_a_missing_anchor_in_the_middle_is_detected(tmp_path: Path) -> None:
    root = _project_with_entries(tmp_path / "p")
    _anchors(root)[1].unlink()
    code, _out, err = _verify(root)
    assert code == 1 and "entry 2 has no anchor" in err


def test_a_failed_anchor_write_is_said_and_an_admin_can_anchor_the_entry(tmp_path: Path) -> None:
    """Writing entry 2's anchor fails (its name is taken by a folder): the command still
    succeeds and says so on stderr; verify names entry 2 (it cannot tell it from a forged
    row), and an admin's `audit anchor 2` mends it, audited."""
    root = tmp_path / "p"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    admin = runner.invoke(app, ["token", "create", "--role", "admin", "-C", str(root)])
    secret = admin.stdout.strip()
    blocker = root / ".kennel" / "artifacts" / "audit" / "anchors" / "000000000002"
    (blocker / "x").mkdir(parents=True)
    created = runner.invoke(
        app, ["token", "create", "--role", "viewer", "--name", "v", "--token", secret, "-C",
              str(root)],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert created.stderr.count("entry 2 was recorded but not anchored") == 1
    assert "holds something that is not an anchor" in created.stderr
    assert "remove what holds that name" in created.stderr
    assert "kennel audit anchor 2" in created.stderr
    stuck = runner.invoke(app, ["audit", "anchor", "2", "--token", secret, "-C", str(root)])
    assert stuck.exit_code != 0 and "remove it and run this again" in stuck.stderr
    (blocker / "x").rmdir()
    blocker.rmdir()
    viewer = created.stdout.strip()
    more = ["token", "create", "--role", "viewer", "--name", "w", "--token", secret]
    assert runner.invoke(app, [*more, "-C", str(root)]).exit_code == 0
    code, _out, err = _verify(root)
    assert code == 1 and "entry 2 has no anchor" in err and "kennel audit anchor 2" in err

    def anchor(seq: str, token: str) -> tuple[int, str]:
        done = runner.invoke(app, ["audit", "anchor", seq, "--token", token, "-C", str(root)])
        return done.exit_code, done.stdout + done.stderr

    code, out = anchor("2", viewer)
    assert code != 0 and "may not anchor audit entries" in out and "Traceback" not in out
    assert anchor("2", secret) == (0, anchor_line(root, 2))
    code, out = anchor("2", secret)
    assert code != 0 and "entry 2 is anchored already" in out
    code, out = anchor("99", secret)
    assert code != 0 and "no audit entry 99" in out
    code, _out, _err = _verify(root)
    assert code == 0
    log = json.loads(runner.invoke(app, ["audit", "log", "--json", "-C", str(root)]).stdout)
    assert log[0]["action"] == "audit.anchored" and log[0]["subject"] == "2"


def anchor_line(root: Path, seq: int) -> str:
    ws = Workspace.load(root)
    with ws.db.session() as s:
        digest = s.scalar(select(AuditRow.hash).where(AuditRow.seq == seq))
    ws.close()
    return f"entry {seq} anchored ({digest[:12]})\n"


def test_an_entry_slipped_in_is_not_anchored_over_a_broken_chain(tmp_path: Path) -> None:
    """`audit anchor` checks the chain up to the entry: an altered earlier entry refuses it."""
    root = tmp_path / "p"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    secret = runner.invoke(app, ["token", "create", "--role", "admin", "-C", str(root)]).stdout
    for name in ("a", "b"):
        done = runner.invoke(app, ["token", "create", "--role", "viewer", "--name", name,
                                   "--token", secret.strip(), "-C", str(root)])  # fmt: skip
        assert done.exit_code == 0
    _anchors(root)[-1].unlink()  # entry 3 unanchored
    ws = Workspace.load(root)
    with ws.db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.seq == 1).values(actor="mallory"))
    ws.close()
    done = runner.invoke(app, ["audit", "anchor", "3", "--token", secret.strip(), "-C", str(root)])
    assert done.exit_code != 0 and "the chain before entry 3 is broken" in done.stderr


def test_entries_before_the_first_anchor_are_not_anchored_by_hand(tmp_path: Path) -> None:
    """A log older than anchoring verifies with its entries unanchored up to the first anchor:
    anchoring one of them would make verify demand anchors of every entry after it."""
    root = tmp_path / "p"
    assert runner.invoke(app, ["init", str(root), "--force"]).exit_code == 0
    secret = runner.invoke(app, ["token", "create", "--role", "admin", "-C", str(root)]).stdout
    for path in _anchors(root):
        path.unlink()  # as if written before anchoring
    done = runner.invoke(app, ["token", "create", "--role", "viewer", "--name", "v",
                               "--token", secret.strip(), "-C", str(root)])  # fmt: skip
    assert done.exit_code == 0 and _verify(root)[0] == 0
    refused = runner.invoke(app, ["audit", "anchor", "1", "--token", secret.strip(), "-C",
                                  str(root)])  # fmt: skip
    assert refused.exit_code != 0 and "comes before the anchor" in refused.stderr
    assert _verify(root)[0] == 0


def test_an_anchor_of_another_log_is_named_as_such(tmp_path: Path) -> None:
    """A metadata database made anew over an old artifact store: the store's anchors hold
    other hashes, and the warning says so instead of advising a repair that cannot work."""
    root = _project_with_entries(tmp_path / "p", n=2)
    (root / ".kennel" / "kennel.db").unlink()
    done = runner.invoke(app, ["token", "create", "--role", "viewer", "--name", "x", "-C",
                               str(root)])  # fmt: skip
    assert done.exit_code == 0
    assert "holds an anchor of entry 1 with another hash" in done.stderr
    assert "an artifact store of its own" in done.stderr and "audit anchor" not in done.stderr


def test_a_long_lived_process_is_told_at_once(tmp_path: Path) -> None:
    """A command that runs for weeks (`monitor watch`) hears of each entry it could not
    anchor when it happens, not at its end (a SIGTERM would lose them)."""
    root = _project_with_entries(tmp_path / "p", n=1)
    (root / ".kennel" / "artifacts" / "audit" / "anchors" / "000000000002").mkdir()
    told: list[str] = []
    ws = Workspace.load(root)
    ws.on_audit_failure = told.append
    try:
        ws.tokens.create("viewer", "later")
        assert len(told) == 1 and "entry 2 was recorded but not anchored" in told[0]
    finally:
        ws.close()


def test_only_the_entries_that_failed_are_named(tmp_path: Path) -> None:
    """One transaction appends three entries and the middle anchor fails: the others are
    anchored, and the message names the one that was not."""
    from kennel.db.audit import record

    root = _project_with_entries(tmp_path / "p", n=1)
    (root / ".kennel" / "artifacts" / "audit" / "anchors" / "000000000003").write_text("junk")
    told: list[str] = []
    ws = Workspace.load(root)
    ws.on_audit_failure = told.append
    try:
        with ws.db.session() as s:
            for i in range(3):
                record(s, actor="t", action="test.note", subject=str(i))
    finally:
        ws.close()
    assert len(told) == 1 and "entry 3 was recorded but not anchored" in told[0], told
    assert "kennel audit anchor 3`" in told[0]
    assert [p.name for p in _anchors(root)] == [f"{n:012d}" for n in (1, 2, 3, 4)]


def test_a_project_whose_first_anchor_failed_is_anchored_from_entry_1(tmp_path: Path) -> None:
    root = tmp_path / "p"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    blocker = root / ".kennel" / "artifacts" / "audit" / "anchors" / "000000000001"
    blocker.mkdir(parents=True)
    made = runner.invoke(app, ["token", "create", "--role", "admin", "-C", str(root)])
    assert made.exit_code == 0 and "kennel audit anchor 1`" in made.stderr
    secret = made.stdout.strip()
    blocker.rmdir()
    more = ["token", "create", "--role", "viewer", "--token", secret, "-C", str(root)]
    assert runner.invoke(app, more).exit_code == 0  # entry 2: anchored, and 1 is not
    (root / ".kennel" / "artifacts" / "audit" / "anchors" / "000000000002").unlink()
    assert _verify(root)[0] == 1  # none anchored: named as such
    early = runner.invoke(app, ["audit", "anchor", "2", "--token", secret, "-C", str(root)])
    assert early.exit_code != 0 and "anchor entry 1 first" in early.stderr
    for seq in ("1", "2"):
        done = runner.invoke(app, ["audit", "anchor", seq, "--token", secret, "-C", str(root)])
        assert done.exit_code == 0, done.output
    assert _verify(root)[0] == 0
