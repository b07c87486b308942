"""A data lake's bad and odd files: the good ones ingested right, each bad one quarantined."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.imaging import decode
from kennel.wiring import Workspace
from tests.conftest import make_project
from tests.helpers import odd_files, write_tree


def test_odd_files_folder_via_cli(tmp_path: Path) -> None:
    files = odd_files()
    lake = write_tree(tmp_path / "lake", {name: data for name, (data, _) in files.items()})
    project = make_project(tmp_path / "proj")
    result = CliRunner().invoke(
        app, ["data", "ingest", str(lake), "--dataset", "odd", "-C", str(project.root), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    expected_bad = {name: reason for name, (_d, reason) in files.items() if reason is not None}
    quarantined = {
        Path(uri).relative_to(lake).as_posix(): reason
        for uri, reason in report["quarantine_sample"]
    }
    assert set(quarantined) == set(expected_bad)
    for name, prefix in expected_bad.items():
        assert quarantined[name].startswith(prefix), (name, quarantined[name])
    assert report["added"] == len(files) - len(expected_bad)
    assert sum(report["quarantined"].values()) == len(expected_bad)

    ws = Workspace.load(project.root)
    try:
        version = ws.catalog.resolve("odd")
        rows = {Path(r.uri).relative_to(lake).as_posix(): r for r in ws.catalog.rows(version)}
        assert set(rows) == {n for n, (_d, reason) in files.items() if reason is None}
        # EXIF orientation 6: stored 80x40, really 40x80.
        assert (rows["cat/rotated.jpg"].width, rows["cat/rotated.jpg"].height) == (40, 80)
        for name, row in rows.items():
            decoded = decode(ws.content.get(row.sha256))
            assert decoded.image.mode == "RGB", name
            assert decoded.image.size == (row.width, row.height), name
    finally:
        ws.close()

    human = CliRunner().invoke(
        app, ["data", "ingest", str(lake), "--dataset", "odd2", "-C", str(project.root)]
    )
    assert human.exit_code == 0
    assert "quarantined 5" in human.stdout and "decompression bomb" in human.stdout


def test_modes_are_normalised_faithfully() -> None:
    files = odd_files()
    grey16 = decode(files["cat/grey16.png"][0]).image
    arr = np.asarray(grey16)
    assert arr.min() <= 5 and arr.max() >= 250  # scaled from 16 bits, not clipped at 255
    rgba = np.asarray(decode(files["cat/rgba.png"][0]).image)
    assert tuple(rgba[0, 0]) == (255, 127, 127)  # half-transparent red over white
    cmyk = np.asarray(decode(files["dog/cmyk.jpg"][0]).image)
    assert cmyk[..., 0].mean() > 200 and cmyk[..., 1].mean() < 60  # (0,255,255,0) CMYK is red
    animated = decode(files["dog/animated.gif"][0])
    assert animated.frames == 3 and animated.image.mode == "RGB"
    rotated = decode(files["cat/rotated.jpg"][0])
    assert rotated.image.size == (40, 80) and (rotated.width, rotated.height) == (40, 80)


def test_a_picture_saved_twice_is_a_near_duplicate_and_a_copy_an_exact_one(
    tmp_path: Path,
) -> None:
    """The same pixels as PNG and as BMP: other bytes, the same perceptual hash, the closest
    near-duplicate there is (reported, 0 bits apart); a byte-for-byte copy of the PNG is an
    exact duplicate, reported as one and not as a near pair."""
    import io

    from PIL import Image

    rng = np.random.default_rng(2)
    picture = Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    saved = {}
    for name, form in (("cat/a.png", "PNG"), ("cat/b.bmp", "BMP")):
        buffer = io.BytesIO()
        picture.save(buffer, format=form)
        saved[name] = buffer.getvalue()
    saved["cat/copy.png"] = saved["cat/a.png"]
    saved["dog/other.jpg"] = odd_files()["dog/cmyk.jpg"][0]
    lake = write_tree(tmp_path / "lake", saved)
    project = make_project(tmp_path / "proj")
    result = CliRunner().invoke(
        app, ["data", "ingest", str(lake), "--dataset", "twice", "-C", str(project.root), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["exact_duplicate_groups"] == 1
    assert report["near_duplicate_pairs"] == 2  # b.bmp with a.png and with its copy
    ws = Workspace.load(project.root)
    try:
        summary = ws.catalog.resolve("twice").summary
        pairs = {
            (Path(a).name, Path(b).name, bits) for a, b, bits in summary["near_duplicates_sample"]
        }
    finally:
        ws.close()
    assert pairs == {("a.png", "b.bmp", 0), ("b.bmp", "copy.png", 0)}
    # a later ingest into the dataset still counts the parent's copies (its summary says it
    # has some, so the child counts them again rather than take its parent's contents as unique)
    more = write_tree(tmp_path / "more", {"dog/new.jpg": odd_files()["dog/cmyk.jpg"][0][:-2]})
    result = CliRunner().invoke(
        app, ["data", "ingest", str(more), "--dataset", "twice", "-C", str(project.root), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["exact_duplicate_groups"] == 1


def test_the_same_bytes_under_two_labels_quarantines_every_copy(tmp_path: Path) -> None:
    """Which label is right? No copy says: none is taken (the first by path was kept)."""
    good = odd_files()["cat/good.jpg"][0]
    other = odd_files()["dog/cmyk.jpg"][0]
    lake = write_tree(
        tmp_path / "lake", {"cat/a.jpg": good, "dog/a-again.jpg": good, "dog/b.jpg": other}
    )
    project = make_project(tmp_path / "proj")
    result = CliRunner().invoke(
        app, ["data", "ingest", str(lake), "--dataset", "two", "-C", str(project.root), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["added"] == 1 and report["quarantined"] == {"label conflict": 2}
    reasons = {Path(uri).name: reason for uri, reason in report["quarantine_sample"]}
    assert reasons == {
        "a.jpg": "label conflict: the same bytes are also labelled 'dog'",
        "a-again.jpg": "label conflict: the same bytes are also labelled 'cat'",
    }
