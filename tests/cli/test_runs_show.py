"""``kennel runs show`` takes the 12-digit ids ``kennel runs list`` prints (any unique prefix of
4 or more digits); a prefix that begins several runs is one line saying so."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

import kennel.train.tracking
from kennel.cli.main import app
from kennel.wiring import Workspace
from tests.conftest import make_project

runner = CliRunner()


def test_a_short_id_shows_its_run_and_an_ambiguous_one_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path / "p")
    root = project.root
    given = iter(uuid.UUID(h) for h in ("abcdef01" + "1" * 24, "abcdef02" + "2" * 24))
    fresh = SimpleNamespace(uuid4=lambda: next(given))
    monkeypatch.setattr(kennel.train.tracking, "uuid", fresh)  # two run ids sharing 7 digits
    ws = Workspace(project)
    try:
        first, second = (
            ws.tracker.start(kind="final", dataset="park", dataset_version="f" * 64, params={})
            for _ in range(2)
        )
    finally:
        ws.close()
    monkeypatch.undo()

    listed = runner.invoke(app, ["runs", "list", "-C", str(root)])
    assert listed.exit_code == 0 and first[:12] in listed.stdout, listed.output
    for ref, want in ((first[:12], first), (second[:8], second), (first, first)):
        shown = runner.invoke(app, ["runs", "show", ref, "-C", str(root)])
        assert shown.exit_code == 0, shown.output
        assert shown.stdout.startswith(want), shown.stdout

    ambiguous = runner.invoke(app, ["runs", "show", "abcdef0", "-C", str(root)])
    assert ambiguous.exit_code == 5, ambiguous.output
    assert ambiguous.stderr.count("\n") == 1 and "ambiguous" in ambiguous.stderr
    assert first in ambiguous.stderr and second in ambiguous.stderr
    for ref in ("0123456789ab", "abc", "not-an-id"):
        missing = runner.invoke(app, ["runs", "show", ref, "-C", str(root)])
        assert missing.exit_code == 3 and missing.stderr.count("\n") == 1, missing.output
        assert "not found" in missing.stderr
