"""Filters that match nothing because they are misspelt say so, instead of an empty table
and exit 0 (a review)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from kennel.cli.main import app
from tests.conftest import make_project

runner = CliRunner()


def _fails(root: Path, *args: str, code: int) -> str:
    result = runner.invoke(app, [*args, "-C", str(root)])
    assert result.exit_code == code, result.output
    [line] = result.stderr.splitlines()
    return line


def test_a_misspelt_kind_model_or_alias_is_named(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p").root
    assert "'bogus' is not one of 'trial', 'final'" in _fails(
        root, "runs", "list", "--kind", "bogus", code=2
    )
    assert runner.invoke(app, ["runs", "list", "--kind", "final", "-C", str(root)]).exit_code == 0
    assert _fails(root, "models", "list", "nope", code=3) == "error: no model named 'nope'"
    assert _fails(root, "models", "history", "nope", "--alias", "x", code=3).startswith(
        "error: no model named 'nope'"
    )


def test_a_demo_too_small_to_pass_its_gates_is_refused_before_it_starts(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--count", "300"])
    assert result.exit_code == 2 and "greater than or equal to 800" in result.stderr
    assert not (tmp_path / "d").exists()


def test_saliency_of_an_unknown_prediction_makes_no_folder(tmp_path: Path) -> None:
    """The prediction is looked up before the page's place is made; an id is never a path."""
    root = make_project(tmp_path / "p").root
    out = tmp_path / "reports"
    line = _fails(root, "analyze", "saliency", "../../../../", "--out", f"{out}/", code=3)
    assert line == "error: prediction '../../../../' not found" and not out.exists()
    assert _fails(root, "models", "show", "pets@@", code=2).startswith("error: 'pets@@': '@'")


def test_alias_history_shows_a_dash_where_there_was_no_version(tmp_path: Path) -> None:
    """An alias set for the first time came from nothing: the history printed "None"."""
    from kennel.wiring import Workspace
    from tests.serving import served_project

    project = served_project(tmp_path / "p", models=1)
    ws = Workspace.load(project.root)
    try:
        ws.registry.set_alias("pets", "canary", 1, actor="t", reason="first")
    finally:
        ws.close()
    result = CliRunner().invoke(app, ["models", "history", "pets", "-C", str(project.root)],
                                env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.output.splitlines() if "canary" in line]
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[2:4] == ["-", "1"] and "None" not in result.output, row
