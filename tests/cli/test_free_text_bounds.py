"""What a person types into a history, the audit trail or the prediction log (a note, a reason,
a camera's name) is bounded as the dashboard's forms bound it: at most 500
characters of one or more lines for a note or reason, 128 of one line for a name, and no
control character (a terminal's escape sequence read back by ``kennel audit log``). Each is
refused as a usage error (exit 2) naming the option, before any project is opened."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.display import printable
from tests.conftest import make_project

runner = CliRunner()
NOTES = [
    ["models", "alias", "pets@1", "candidate", "--reason"],
    ["release", "pets@1", "--reason"],
    ["rollback", "--reason"],
    ["approve", "pets@1", "--note"],
    ["reject", "pets@1", "--note"],
    ["alerts", "ack", "1", "--note"],
    ["alerts", "resolve", "1", "--note"],
]
NAMES = [["watch", "clip.mp4", "--camera"]]  # a token's name: checked by the token store


@pytest.mark.parametrize("command", NOTES + NAMES, ids=lambda c: " ".join(c[:2]))
def test_control_characters_and_endless_text_are_refused(
    command: list[str], tmp_path: Path
) -> None:
    option = command[-1]
    limit = 500 if command in NOTES else 128
    for value, says in (
        ("ok\x1b]0;PWNED\x07", "control characters"),
        ("x" * (limit + 1), f"{limit + 1} characters long; at most {limit}"),
    ):
        result = runner.invoke(app, [*command, value, "-C", str(tmp_path / "none")])
        assert result.exit_code == 2, result.output
        assert f"Invalid value for '{option}': {says}" in result.stderr
    assert not (tmp_path / "none").exists()


def test_a_note_may_hold_lines_and_a_name_may_not(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    lines = runner.invoke(app, ["reject", "pets@1", "--note", "blurry\non camera 2", "-C", root])
    assert lines.exit_code == 14 and "needs a token" in lines.stderr  # past the note's check
    name = runner.invoke(app, ["watch", "none.mp4", "--camera", "a\nb", "-C", root])
    assert name.exit_code == 2 and "line breaks" in name.stderr
    fits = runner.invoke(app, ["watch", str(tmp_path / "none.mp4"), "--camera", "n" * 128,
                               "-C", root])  # fmt: skip
    assert fits.exit_code == 6 and "is not a file" in fits.stderr  # past the name's check


def test_the_login_name_reaches_the_audit_trail_escaped_and_bounded(tmp_path: Path) -> None:
    """``local:NAME`` comes from LOGNAME, which anyone may set to a terminal's escapes."""
    root = str(make_project(tmp_path / "p", sections={"auth": {"local_role": "admin"}}).root)
    hostile = "mallory\x1b[2J\x1b]0;pwned\x07" + "A" * 3000
    made = runner.invoke(app, ["token", "create", "--role", "viewer", "--name", "v", "-C", root,
                               "--json"], env={"LOGNAME": hostile})  # fmt: skip
    assert made.exit_code == 0, made.output
    log = runner.invoke(app, ["audit", "log", "-C", root, "--json"])
    actors = {entry["actor"] for entry in json.loads(log.stdout)}
    [actor] = [a for a in actors if "mallory" in a]
    assert "\x1b" not in actor and "\x07" not in actor and "\\x1b[2J" in actor
    assert actor == "bootstrap:" + printable(hostile[:64])  # cut, then escaped whole


@pytest.mark.parametrize(
    "text", ["approved\rREJECTED", "ok\u200bok", "ok\u200eok", "ok\ufeff", "ok\u2060x"]
)
def test_a_lone_carriage_return_and_invisible_marks_are_refused(text: str, tmp_path: Path) -> None:
    """\\r alone rewrites the line it is printed on; zero-width and direction marks make two
    notes look alike. A browser's \\r\\n line break is a line break."""
    result = runner.invoke(app, ["reject", "pets@1", "--note", text, "-C", str(tmp_path)])
    assert result.exit_code == 2 and "control characters" in result.stderr
    [mark] = [c for c in text if not c.isalnum()]
    assert f"U+{ord(mark):04X}" in result.stderr


def test_a_windows_line_break_is_a_line_break(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    result = runner.invoke(app, ["reject", "pets@1", "--note", "blurry\r\ncam 2", "-C", root])
    assert result.exit_code == 14  # past the note's check, at the token's
