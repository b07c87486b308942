"""README's quick start and walkthrough are true: the walkthrough is executed here."""

from __future__ import annotations

import json
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
    # the walkthrough's data and kennel train's defaults give a real model, not a coin
    trained = outputs[-2]
    accuracy = float(re.search(r"accuracy (0\.\d+)", trained)[1])  # type: ignore[index]
    assert accuracy >= 0.75 and "gates passed" in trained and "pets@champion now" in trained
    # its report slices the camera scenario, never the per-image index of the manifest
    assert runner.invoke(app, ["models", "download", "pets@1", "bundle"]).exit_code == 0
    report = json.loads(Path("bundle/report.json").read_text())
    assert {"scenario", "seed"} == set(report["slices"]) and "index" in report["slices_skipped"]
    page = Path("bundle/report.html").read_text()
    # the night folder came without a manifest: its images have no scenario value
    assert ">index<" not in page and ">day<" in page and ">(not set)<" in page
