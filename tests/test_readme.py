"""README's quick start and walkthrough are true: the walkthrough is executed here."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kennel.cli.main import app
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_quick_start_is_exactly_two_commands() -> None:
    block = README.split("## Quick start", 1)[1].split("```", 2)[1]
    assert block.strip().splitlines() == ["make demo", "make test"]


def test_walkthrough_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    section = re.search(r"<!-- readme-walkthrough.*?```console\n(.*?)```", README, re.S)
    assert section is not None
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    outputs = []
    for line in section.group(1).splitlines():
        argv = shlex.split(line.removeprefix("$ "))
        if argv[0] == "cd":
            monkeypatch.chdir(Path.cwd() / argv[1])
            continue
        assert argv[0] == "kennel"
        result = runner.invoke(app, [*argv[1:], *(["--workers", "1"] if "synth" in argv else [])])
        assert result.exit_code == 0, (line, result.output)
        outputs.append(result.stdout)
    assert "unchanged" in outputs[3]  # the second identical ingest
    assert "audit log intact" in outputs[-1]
