"""`kennel models download` is all or nothing: a blob that fails its hash check part-way leaves
the destination exactly as it was (no partial bundle, no mix of two versions, no temp files)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.storage import digest_key
from kennel.wiring import Workspace

runner = CliRunner()


def _register(ws: Workspace, tag: str) -> int:
    files = {"kennel-model.json": f'{{"tag": "{tag}"}}'.encode(), "model.onnx": tag.encode() * 99}
    return ws.registry.register(
        "pets",
        lambda _v: files,
        run_id=None,
        dataset="d",
        dataset_version="v",
        metrics={},
        gates_passed=True,
        gate_reasons=[],
        actor="test",
    ).version


def _download(ws: Workspace, ref: str, dest: Path, *more: str) -> tuple[int, str]:
    args = ["models", "download", ref, str(dest), *more, "-C", str(ws.project.root)]
    result = runner.invoke(app, args)
    return result.exit_code, result.output


def test_failed_download_leaves_no_partial_file(workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace
    _register(ws, "one")
    two = ws.registry.resolve(f"pets@{_register(ws, 'two')}")
    out = tmp_path / "out"
    code, text = _download(ws, "pets@1", out / "bundle")
    assert code == 0, text
    before = {p.name: p.read_bytes() for p in (out / "bundle").iterdir()}
    assert sorted(before) == ["kennel-model.json", "model.onnx"]

    # the file written last is corrupt in the artifact store: the failure comes mid-download
    blob = Path(str(ws.content.blobs.url)) / digest_key(two.files["model.onnx"])
    blob.write_bytes(b"tampered")
    for dest, more in ((out / "fresh", ()), (out / "bundle", ("--force",))):
        code, text = _download(ws, two.ref, dest, *more)
        assert code != 0 and text.startswith("error: ") and "corrupt" in text, text
    assert not (out / "fresh").exists()  # nothing at all, not the one file read before
    after = {p.name: p.read_bytes() for p in (out / "bundle").iterdir()}
    assert after == before  # still the complete pets@1, not pets@2's metadata beside it
    assert sorted(p.name for p in out.iterdir()) == ["bundle"]  # no temporary folder left

    # into a folder that already holds other files: refused, unless --force; then a good
    # download replaces only its own
    (out / "bundle" / "notes.txt").write_text("mine")
    blob.unlink()
    ws.content.put(b"two" * 99)
    code, text = _download(ws, two.ref, out / "bundle")
    assert code == 4 and "the folder is not empty" in text, text
    assert {p.name: p.read_bytes() for p in (out / "bundle").iterdir()} == {
        **before,
        "notes.txt": b"mine",
    }
    code, text = _download(ws, two.ref, out / "bundle", "--force")
    assert code == 0, text
    assert (out / "bundle" / "model.onnx").read_bytes() == b"two" * 99
    assert (out / "bundle" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["bundle"]


def test_a_folder_where_a_file_goes_is_refused_before_anything_moves(
    workspace: Workspace, tmp_path: Path
) -> None:
    """--force into a folder whose model.onnx is a folder: one line, exit 2, and not one of
    the bundle's files moved in (the metadata and card were, beside an error from the move).
    A DEST that is a link to an empty folder gets the bundle in that folder."""
    ws = workspace
    _register(ws, "one")
    out = tmp_path / "out"
    dest = out / "dest"
    (dest / "model.onnx" / "inner").mkdir(parents=True)
    code, text = _download(ws, "pets@1", dest, "--force")
    assert code == 2, text
    assert text.startswith("error: cannot download into") and "model.onnx is not a plain" in text
    assert sorted(p.name for p in dest.iterdir()) == ["model.onnx"]  # nothing moved in
    assert sorted(p.name for p in out.iterdir()) == ["dest"]  # no temporary folder

    real = out / "real"
    real.mkdir()
    (out / "link").symlink_to(real)
    code, text = _download(ws, "pets@1", out / "link")
    assert code == 0, text
    assert sorted(p.name for p in real.iterdir()) == ["kennel-model.json", "model.onnx"]
    assert (out / "link").is_symlink()
    (out / "loop").symlink_to(out / "loop")
    code, text = _download(ws, "pets@1", out / "loop")
    assert code == 2 and text.startswith("error: cannot download into") and "loop" in text, text
