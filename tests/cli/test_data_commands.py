from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import load_project
from kennel.db.audit import AuditLog
from kennel.db.schema import IngestRunRow
from kennel.wiring import Workspace
from tests.conftest import make_project
from tests.helpers import labelled_jpegs, write_tree

runner = CliRunner()


def _run(*args: str) -> dict[str, object] | list[object]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, object] | list[object] = json.loads(result.stdout)
    return data


def test_ingest_list_show_diff(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    write_tree(tmp_path / "a", labelled_jpegs(10, seed=1))
    write_tree(tmp_path / "b", labelled_jpegs(4, seed=2))
    first = _run("data", "ingest", str(tmp_path / "a"), "-d", "pets", "-C", root)
    second = _run("data", "ingest", str(tmp_path / "b"), "-d", "pets", "-C", root)
    assert isinstance(first, dict) and isinstance(second, dict)
    listed = _run("data", "list", "-C", root)
    assert [v["seq"] for v in listed] == [1, 2]  # type: ignore[index]
    shown = _run("data", "show", "pets@v2", "-C", root)
    assert shown["rows"] == 14 and shown["parent"] == first["version"]["version"]  # type: ignore[index, call-overload]
    version_id = first["version"]["version"]  # type: ignore[index]
    upper = _run("data", "show", f"pets@{version_id[:8].upper()}", "-C", root)  # copied as is
    assert upper["version"] == version_id  # type: ignore[call-overload]
    diff = _run("data", "diff", "pets@v1", "pets", "-C", root)
    assert len(diff["added"]) == 4 and diff["removed"] == []  # type: ignore[call-overload]
    human = runner.invoke(app, ["data", "show", "pets", "-C", root])
    assert human.exit_code == 0 and "label" in human.stdout and "quarantined" in human.stdout


def test_errors_are_one_line_with_exit_codes(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    cases = [
        (["data", "show", "ghost", "-C", root], 3, "no versions"),
        (["data", "list", "ghost", "-C", root], 3, "no versions"),  # was an empty table, exit 0
        (["data", "list", "ghost@v1", "-C", root], 2, "invalid dataset name"),  # a ref, no name
        # a malformed ref is bad input (exit 2), as a model ref's is, not a missing version
        (["data", "show", "ghost@f79", "-C", root], 2, "at least 4 hex digits"),
        (["data", "show", "ghost@", "-C", root], 2, "no version after '@'"),  # was the latest
        (["data", "show", "ghost@vx", "-C", root], 2, "bad version 'vx'"),
        (["data", "show", "ghost@v1@v2", "-C", root], 2, "bad version 'v1@v2'"),
        (["data", "ingest", str(tmp_path / "missing"), "-d", "x", "-C", root], 6, "does not exist"),
        (
            ["data", "ingest", str(tmp_path), "-d", "x", "--layout", "odd", "-C", root],
            2,
            "--layout",
        ),
        (["data", "ingest", str(tmp_path), "-d", "bad name!", "-C", root], 2, "dataset name"),
    ]
    for args, code, text in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == code, (args, result.output)
        assert text in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_ingest_with_no_valid_image_fails_clearly(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    write_tree(tmp_path / "junk", {"cat/a.jpg": b"nope", "dog/b.jpg": b""})
    result = runner.invoke(app, ["data", "ingest", str(tmp_path / "junk"), "-d", "j", "-C", root])
    assert result.exit_code == 6 and "no valid images" in result.stderr
    # a failed first ingest leaves no empty dataset behind (the audit trail keeps the run)
    project = load_project(Path(root))
    ws = Workspace(project)
    try:
        assert ws.catalog.datasets() == []
        with ws.db.session() as s:
            assert s.scalar(select(func.count()).select_from(IngestRunRow)) == 0
        actions = [e.action for e in AuditLog(ws.db).entries() if e.action.startswith("ingest")]
        assert actions == ["ingest.failed", "ingest.start"]  # newest first
    finally:
        ws.close()
    # and the name is free for an ingest that works
    write_tree(tmp_path / "good", labelled_jpegs(4, seed=3))
    _run("data", "ingest", str(tmp_path / "good"), "-d", "j", "-C", root)
    assert len(_run("data", "list", "-C", root)) == 1


def test_synth_command(tmp_path: Path) -> None:
    out = _run(
        "data", "synth", str(tmp_path / "s"), "--count", "20", "--scenario", "fog", "--workers", "1"
    )
    assert out["count"] == 20  # type: ignore[call-overload]
    bad = runner.invoke(app, ["data", "synth", str(tmp_path / "s"), "--scenario", "snow"])
    assert bad.exit_code == 2 and "--scenario" in bad.stderr


def test_audit_commands(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    write_tree(tmp_path / "a", labelled_jpegs(3))
    _run("data", "ingest", str(tmp_path / "a"), "-d", "pets", "-C", root)
    verdict = _run("audit", "verify", "-C", root)
    assert verdict["ok"] is True and verdict["checked"] >= 3  # type: ignore[call-overload]
    log = _run("audit", "log", "-C", root)
    assert {e["action"] for e in log} >= {"ingest.start", "dataset.version", "ingest.done"}  # type: ignore[index]


def test_near_duplicates_in_two_splits_are_warned_of_and_listed(tmp_path: Path) -> None:
    """One scene saved twelve times with a different pixel each (a fixed camera's frames):
    the split puts some in test and validation, and both the ingest and `data show` say how
    many near-duplicate pairs lie across splits, naming some."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(5)
    scene = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    files = {}
    for n in range(12):
        frame = scene.copy()
        frame[n, n] = 255 - frame[n, n]  # new bytes, the same picture to a perceptual hash
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="PNG")
        files[f"cat/{n:02d}.png"] = buffer.getvalue()
    lake = write_tree(tmp_path / "lake", files)
    project = make_project(tmp_path / "proj")
    runner = CliRunner()
    ingest = ["data", "ingest", str(lake), "--dataset", "scene", "-C", str(project.root)]
    result = runner.invoke(app, [*ingest, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    across = report["near_duplicates_across_splits"]
    assert report["near_duplicate_pairs"] == 12 * 11 // 2 and 0 < across < 66
    ws = Workspace.load(project.root)
    try:
        version = ws.catalog.resolve("scene")
        split_of = {Path(r["uri"]).name: r["split"] for r in ws.catalog.table(version).to_pylist()}
    finally:
        ws.close()
    per_split = [list(split_of.values()).count(s) for s in set(split_of.values())]
    assert across == (sum(per_split) ** 2 - sum(n * n for n in per_split)) // 2
    shown = runner.invoke(app, ["data", "show", "scene", "-C", str(project.root)])
    assert shown.exit_code == 0, shown.output
    assert f"{across} near-duplicate pair(s) lie in two different splits" in shown.output
    listed = [line for line in shown.output.splitlines() if "in two splits" in line]
    assert len(listed) == min(10, across)
    for line in listed:
        a, b = (Path(u.strip()).name for u in line.split(":", 1)[1].split(","))
        assert split_of[a] != split_of[b]
