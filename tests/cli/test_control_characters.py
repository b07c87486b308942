"""A file name is data: the control characters in it (a terminal's escape sequences among them)
are printed escaped, whether in a report line, a table or the one error line; ``--json``
keeps the name as it is, JSON-escaped."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from kennel.cli.main import app
from tests.conftest import make_project
from tests.helpers import labelled_jpegs, write_tree

runner = CliRunner()
HOSTILE = "x\x1b]0;PWNED\x07\x1b[2J"  # sets the terminal's title, then clears the screen
ESCAPED = "x\\x1b]0;PWNED\\x07\\x1b[2J"


def lake(root: Path) -> Path:
    write_tree(root, labelled_jpegs(12))
    (root / "cat" / f"{HOSTILE}.jpg").write_bytes(b"")  # quarantined: an empty file
    return root


def test_a_quarantined_name_is_printed_escaped(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    command = ["data", "ingest", str(lake(tmp_path / "lake")), "-d", "mp", "-C", root]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    line = f"  quarantined {tmp_path / 'lake' / 'cat' / ESCAPED}.jpg: empty file (0 bytes)"
    assert line in result.stdout.splitlines()


def test_a_line_break_in_a_name_stays_on_its_line(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    write_tree(tmp_path / "lake", labelled_jpegs(12))
    (tmp_path / "lake" / "cat" / "two\nlines.jpg").write_bytes(b"")
    (tmp_path / "lake" / "cat" / "para\u2028graph.jpg").write_bytes(b"")  # a line separator
    command = ["data", "ingest", str(tmp_path / "lake"), "-d", "mp", "-C", root]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "lake" / "cat"
    for name in ("two\\x0alines.jpg", "para\\u2028graph.jpg"):
        line = f"  quarantined {folder}/{name}: empty file (0 bytes)"
        assert line in result.stdout.splitlines()
    listed = runner.invoke(app, ["data", "list", "-C", root])
    assert listed.exit_code == 0 and "mp" in listed.stdout  # kennel's own tables are as before


def test_json_keeps_the_name_as_it_is(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    lake(tmp_path / "lake")
    command = ["data", "ingest", str(tmp_path / "lake"), "-d", "mp", "-C", root, "--json"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout  # JSON escapes it as \u001b
    report = json.loads(result.stdout)
    [(uri, reason)] = report["quarantine_sample"]
    assert reason == "empty file (0 bytes)"
    assert uri == str(tmp_path / "lake" / "cat" / f"{HOSTILE}.jpg")


def test_the_error_line_escapes_a_name(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    archive = tmp_path / f"{HOSTILE}.zip"
    archive.write_bytes(b"not a zip")
    result = runner.invoke(app, ["data", "ingest", str(archive), "-d", "mp", "-C", root])
    assert result.exit_code != 0
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert result.stderr == (
        f"error: cannot open zip archive {tmp_path / ESCAPED}.zip: File is not a zip file\n"
    )


def test_a_name_that_reads_as_markup_is_printed_as_it_is(tmp_path: Path) -> None:
    """Square brackets in a name are data, not rich markup: "[/b]" used to raise a
    MarkupError in a table, and "[bold]" vanished from a line."""
    root = str(make_project(tmp_path / "p").root)
    lake = write_tree(tmp_path / "z[/b]", labelled_jpegs(12))
    (lake / "manifest.csv").write_text("uri,label\ncat/img0_0000.jpg,evil[/b]\n")
    result = runner.invoke(app, ["data", "ingest", str(lake), "-d", "mp", "-C", root])
    assert result.exit_code == 0, result.output
    audit = runner.invoke(app, ["audit", "log", "-C", root])  # the source in a table cell
    assert audit.exit_code == 0, audit.output
    show = runner.invoke(app, ["data", "show", "mp", "-C", root])
    assert show.exit_code == 0 and f"{lake} layout=auto" in show.stdout
    manifest = str(lake / "manifest.csv")
    result = runner.invoke(app, ["data", "ingest", manifest, "-d", "m", "-C", root])
    assert result.exit_code != 0  # the only row's label is not a configured one
    # counted by kind, "unknown label", not by the label itself (it was cut at its first ":")
    assert "(1 quarantined: {'unknown label': 1})" in result.output


def test_a_project_path_is_printed_as_it_is(tmp_path: Path) -> None:
    """`kennel init` printed a folder named "we[bold]ird<newline>name" as "weird" and a line
    break: a path is data, on one line, its brackets kept."""
    folder = tmp_path / "we[bold]ird\nname"
    result = runner.invoke(app, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    assert line.startswith(f"{tmp_path}/we[bold]ird\\x0aname/kennel.yaml created")


def test_a_folder_that_reads_as_markup_is_written_to_and_printed(tmp_path: Path) -> None:
    """`data synth` into a folder named "b[/b]c" wrote the images, then ended in a MarkupError
    traceback printing where."""
    out = tmp_path / "b[/b]c"
    result = runner.invoke(app, ["data", "synth", str(out), "--count", "2", "--size", "32"])
    assert result.exit_code == 0, result.output
    assert f"images to {out} (" in result.stdout
