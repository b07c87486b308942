"""Paths and ports the system refuses, through the real CLI: a file where a folder must be, a
place no one may write, an empty path, a busy port or a host that is no address. Each is one
line on stderr and a non-zero exit, never a traceback, and nothing is announced or written
before it is known to work."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import Project
from tests.conftest import make_project

runner = CliRunner()


def fails(*args: str, code: int) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (args, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
    assert "Traceback" not in result.output
    assert not result.stdout.strip(), (args, result.stdout)  # no banner, no partial result
    return lines[0]


@pytest.fixture
def afile(tmp_path: Path) -> Path:
    path = tmp_path / "afile"
    path.write_text("a plain file\n")
    return path


def test_output_folders_the_system_refuses_are_one_line(
    park_model: Project, tmp_path: Path, afile: Path
) -> None:
    root = str(park_model.root)
    manifest = tmp_path / "lake" / "day" / "manifest.csv"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("path,label\n")
    line = fails("data", "synth", str(manifest), "--count", "3", code=2)  # a usage error
    assert line == f"error: cannot use {manifest}: it exists and is not a folder"
    line = fails("data", "synth", "/proc/x", "--count", "3", code=1)
    assert line == "error: cannot use /proc/x: No such file or directory"
    assert manifest.read_text() == "path,label\n"

    project_file = Path(root) / "kennel.yaml"
    for target, reason, code in (
        (project_file, "it exists and is not a folder", 2),
        (Path("/dev/null"), "it exists and is not a folder", 2),
        (afile / "sub", "a part of the path is a file, not a folder", 2),
        (Path("/proc/foo"), "No such file or directory", 1),  # what the system refuses
    ):
        assert fails("init", str(target), code=code) == f"error: cannot use {target}: {reason}"

    line = fails("models", "compliance", "pets@1", "--out", str(afile / "x.html"), "-C", root,
                 code=2)  # fmt: skip
    assert line == f"error: cannot use {afile}: it exists and is not a folder"
    line = fails("models", "compliance", "pets@1", "--out", "/proc/x.html", "-C", root, code=1)
    assert line == "error: cannot use /proc/x.html: No such file or directory"  # not its temp
    line = fails("export", "package", "pets@1", "--out", str(afile), "-C", root, code=2)
    assert line == f"error: cannot use {afile}: it exists and is not a folder"
    assert afile.read_text() == "a plain file\n"


def test_a_sqlite_folder_that_cannot_be_made_is_as_clean_as_a_file(tmp_path: Path) -> None:
    for url in ("sqlite:////proc/S3CRETPW/x.db", "sqlite:////proc/x.db"):
        root = make_project(tmp_path / "p", sections={"store": {"metadata_url": url}}).root
        line = fails("data", "list", "-C", str(root), code=10)
        assert "/proc" in line and "x.db" in line, line


def test_a_mistyped_amqp_url_is_told_before_the_model_loads(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)  # no model at all: the URL is checked first
    line = fails("rpc-worker", "--model", "pets@1", "--url", "notaurl", "-C", root, code=2)
    assert line.startswith("error: --url: 'notaurl' is not an AMQP URL; use amqp://")
    line = fails("rpc-worker", "--model", "pets@1", "--url", "amqp://u:s3cret@h:99999/",
                 "-C", root, code=2)  # fmt: skip
    assert "Port out of range" in line and "s3cret" not in line
    for queue, said in (
        ("", "--queue: give a queue name (an empty one is named by RabbitMQ)"),
        ("q" * 256, "--queue: at most 255 bytes (AMQP's limit); this one has 256"),
        ("é" * 128, "--queue: at most 255 bytes (AMQP's limit); this one has 256"),
        ("amq.mine", "--queue: names starting with 'amq.' are RabbitMQ's own"),
    ):
        line = fails("rpc-worker", "--model", "pets@1", "--queue", queue, "-C", root, code=2)
        assert line == f"error: {said}", line


def test_download_refuses_a_folder_that_is_not_empty_unless_forced(
    park_model: Project, tmp_path: Path
) -> None:
    root = str(park_model.root)
    dest = tmp_path / "bundle"
    dest.mkdir()
    (dest / "report.html").write_text("mine")
    line = fails("models", "download", "pets@1", str(dest), "-C", root, code=4)
    assert f"cannot download into {dest}: the folder is not empty" in line and "--force" in line
    assert [p.name for p in dest.iterdir()] == ["report.html"]
    assert (dest / "report.html").read_text() == "mine"
    result = runner.invoke(app, ["models", "download", "pets@1", str(dest), "--force", "-C", root])
    assert result.exit_code == 0, result.output
    assert (dest / "report.html").read_text() != "mine"  # the bundle's own report now
    assert (dest / "model.onnx").is_file()
    assert "--force" in runner.invoke(app, ["models", "download", "--help"]).stdout


def test_empty_paths_are_refused_not_taken_for_the_current_folder(
    park_model: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = str(park_model.root)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    for args, name in (
        (["init", ""], "'path'"),
        (["data", "synth", "", "--count", "3"], "'out'"),
        (["models", "download", "pets@1", "", "-C", root], "'dest'"),
        (["models", "compliance", "pets@1", "--out", "", "-C", root], "'--out'"),
        (["monitor", "run", "--report", "", "-C", root], "'--report'"),
        (["analyze", "saliency", "x", "--out", "", "-C", root], "'--out'"),
        (["data", "list", "-C", ""], "'--project'"),
        (["predict", str(tmp_path), "", "-C", root], "'inputs'"),
    ):
        line = fails(*args, code=2)
        assert name in line and "an empty path" in line, line
    assert list(here.iterdir()) == []  # nothing initialised, drawn or downloaded here


def test_nan_is_refused_by_every_float_option(tmp_path: Path) -> None:
    """No comparison with NaN is true, so 'nan' passed every range check (--fps nan ran a
    watch that scored no frame); every float option of every command now refuses it."""
    out = tmp_path / "clip.mp4"
    for args, name in (
        (["watch", "clip.mp4", "--fps", "nan"], "'--fps'"),
        (["watch", "clip.mp4", "--duration", "-NaN"], "'--duration'"),
        (["watch", "clip.mp4", "--hold-seconds", "nan"], "'--hold-seconds'"),
        (["data", "synth-video", str(out), "--dataset", "d", "--fps", " nan"], "'--fps'"),
        (["monitor", "watch", "--every", "nan"], "'--every'"),
    ):
        line = fails(*args, "-C", str(tmp_path / "none"), code=2)
        assert name in line and "not a number" in line, line
    assert list(tmp_path.iterdir()) == []  # nothing written, no project made


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:  # another process's server, as far as kennel can tell
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_busy_port_or_a_bad_host_is_one_line_before_any_banner(
    tmp_path: Path, busy_port: int
) -> None:
    root = str(make_project(tmp_path / "p").root)
    busy = f"error: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    assert fails("ui", "--port", str(busy_port), "-C", root, code=15) == busy
    assert fails("serve", "--env", "staging", "--port", str(busy_port), "-C", root,
                 code=15) == busy  # fmt: skip
    for command in (["ui"], ["serve", "--env", "staging"]):
        line = fails(*command, "--host", "999.1.1.1", "-C", root, code=2)
        assert line.startswith("error: cannot serve on host '999.1.1.1': not an IP address")


def test_an_empty_host_is_refused_not_every_interface(tmp_path: Path) -> None:
    root = str(make_project(tmp_path / "p").root)
    line = fails("ui", "--host", "", "-C", root, code=2)
    assert line.startswith("error: cannot serve on an empty host")


def test_an_os_error_line_keeps_the_path_as_it_is_and_escapes_control_characters(
    tmp_path: Path,
) -> None:
    """The line for a path the system refuses: two spaces stay two (the path is the path),
    an escape sequence in it is written out, not sent to the terminal."""
    odd = tmp_path / "two  spaces\x1b[31mRED"
    odd.write_text("a file, not a folder")
    line = fails("init", str(odd / "sub"), code=2)  # a file where a folder must be
    assert "two  spaces\\x1b[31mRED/sub" in line and "\x1b" not in line


def test_kennel_alone_prints_the_help_and_no_error() -> None:
    for args in ([], ["models"], ["data"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and result.stderr == "", (args, result.stderr)
        assert "Usage:" in result.stdout and "--help" in result.stdout
    out = subprocess.run(
        [sys.executable, "-m", "kennel.cli"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and out.stderr == "" and "Usage: kennel" in out.stdout


def test_synth_video_names_only_an_mp4(tmp_path: Path) -> None:
    """The clip is MPEG-4: an .avi (or a folder) is refused before any image is read."""
    (tmp_path / "outdir").mkdir()
    for out, said in (
        (tmp_path / "clip.avi", "name a .mp4 file"),
        (tmp_path / "outdir", "is a folder"),
    ):
        line = fails(
            "data", "synth-video", str(out), "--dataset", "d", "-C", str(tmp_path / "none"), code=2
        )
        assert said in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outdir"]


def test_nothing_is_written_into_the_projects_state_folder(
    park_model: Project, tmp_path: Path
) -> None:
    """A bundle, wheel, page or manifest sent into .kennel/ (its database, store and runs) by
    mistake is refused before anything is written: with --force, a compliance page replaced
    the metadata database, and a download put a bundle among the store's blobs."""
    root, state = str(park_model.root), park_model.state_dir
    link = tmp_path / "elsewhere"
    link.symlink_to(state / "artifacts")  # the same place under another name
    for args, option in (
        (["models", "download", "pets@1", str(state / "artifacts"), "--force"], "DEST"),
        (["models", "download", "pets@1", str(link), "--force"], "DEST"),
        (["models", "compliance", "pets@1", "--out", str(state / "kennel.db"), "--force"], "--out"),
        (["export", "package", "pets@1", "--out", str(state)], "--out"),
        (["monitor", "run", "--report", str(state / "r.html"), "--force"], "--report"),
    ):
        line = fails(*args, "-C", root, code=2)
        assert line.startswith(f"error: {option} ") and "inside the project's state folder" in line
    assert not list((state / "artifacts").glob("*.onnx"))
    assert (state / "kennel.db").read_bytes().startswith(b"SQLite format 3")
    assert not (state / "r.html").exists()
