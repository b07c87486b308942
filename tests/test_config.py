from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import load_project, parse_config
from kennel.errors import ConfigError


def test_defaults_resolve_against_project_root(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["init", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    project = load_project(tmp_path)
    assert project.metadata_url == f"sqlite:///{tmp_path.resolve()}/.kennel/kennel.db"
    assert project.artifacts_url == str(tmp_path.resolve() / ".kennel" / "artifacts")
    assert (tmp_path / ".kennel" / "kennel.db").is_file()
    assert project.config.data.split.test == 0.2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"data": {"split": {"test": 1.5}}}, "data.split.test"),
        ({"data": {"labelz": ["cat"]}}, "data.labelz"),
        ({"store": {"metadata_url": 3}}, "store.metadata_url"),
        ({"data": {"split": {"test": 0.6, "validation": 0.5}}}, "data.split"),
        ([1, 2], "mapping"),
    ],
)
def test_bad_config_names_the_key(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_cli_reports_config_errors_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "kennel.yaml").write_text("data:\n  min_side: -4\n")
    result = CliRunner().invoke(app, ["data", "list", "-C", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "data.min_side" in result.stderr
    missing = CliRunner().invoke(app, ["data", "list", "-C", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "kennel init" in missing.stderr
