"""Where a page asked for by path is written (``kennel.fsutil.page_target``): a report sent by
mistake to a project's kennel.yaml, or as root to /etc/passwd, replaced that file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kennel.errors import ConfigError
from kennel.fsutil import KENNEL_PAGE, page_target, write_text_atomic


def test_a_page_replaces_only_kennels_own_pages_unless_forced(tmp_path: Path) -> None:
    config = tmp_path / "kennel.yaml"
    config.write_text("project: mine\n")
    with pytest.raises(ConfigError, match=r"--report .*kennel.yaml: it exists and is not a page"):
        page_target(config, "report.html", option="--report")
    assert config.read_text() == "project: mine\n"
    assert page_target(config, "report.html", force=True) == config
    new = tmp_path / "new.html"
    assert page_target(new, "report.html") == new  # not there yet
    write_text_atomic(new, f"<!doctype html><html><head>{KENNEL_PAGE}</head></html>")
    assert page_target(new, "report.html") == new  # kennel's own page: replaced again
    assert page_target(tmp_path, "report.html") == tmp_path / "report.html"  # a folder
    (tmp_path / "report.html").write_text("<!doctype html><p>someone else's</p>")
    with pytest.raises(ConfigError, match="--out"):
        page_target(tmp_path, "report.html")
    link = tmp_path / "link.html"
    link.symlink_to(tmp_path / "nowhere")  # a dangling link is a file in the way too
    with pytest.raises(ConfigError):
        page_target(link, "report.html")
    # a page that only quotes the mark in its body (or a source file) is not kennel's
    quoting = tmp_path / "quoting.html"
    quoting.write_text(f"<!doctype html><html><head></head><body><pre>{KENNEL_PAGE}</pre>")
    source = tmp_path / "fsutil.py"
    source.write_text(f"KENNEL_PAGE = '{KENNEL_PAGE}'\n")
    commented = tmp_path / "commented.html"
    commented.write_text(f"<!DOCTYPE html><html><head><!-- {KENNEL_PAGE} --></head>")
    scripted = tmp_path / "scripted.html"
    scripted.write_text(f"<!doctype html><head><script>var s = `{KENNEL_PAGE}`;</script></head>")
    for other in (quoting, source, commented, scripted):
        with pytest.raises(ConfigError, match="not a page kennel wrote"):
            page_target(other, "report.html")
    # "a/x/../r.html" is a/r.html: no stray a/x folder is made
    assert (
        page_target(tmp_path / "a" / "x" / ".." / "r.html", "r.html") == tmp_path / "a" / "r.html"
    )
    assert not (tmp_path / "a" / "x").exists()


def test_a_folder_that_cannot_be_written_is_said_before_the_caller_acts(tmp_path: Path) -> None:
    """`monitor run --report` into a folder it cannot write opened alerts (and would have run
    their actions) before it found out."""
    import os

    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(OSError) as found:  # the CLI says "cannot use PATH: why", exit 1
        page_target(blocked / "r.html", "r.html", option="--report")
    assert found.value.filename == str(blocked)
    with pytest.raises(OSError) as found:
        page_target(Path("/proc/r.html"), "r.html")
    assert found.value.filename == "/proc/r.html"  # the path asked for, never the probe
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root writes anywhere
            with pytest.raises(PermissionError):
                page_target(locked / "r.html", "r.html")
    finally:
        locked.chmod(0o700)
    assert list(tmp_path.glob("**/.kennel-probe-*")) == []


def test_a_path_ending_in_a_slash_is_a_folder_made_for_the_page(tmp_path: Path) -> None:
    wanted = f"{tmp_path / 'reports'}/"  # the command line's "--report reports/"
    assert page_target(wanted, "report.html") == tmp_path / "reports" / "report.html"
    assert (tmp_path / "reports").is_dir()  # made, and proven writable, before any work
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(OSError):  # a file where the folder would go: said, nothing replaced
        page_target(f"{tmp_path / 'taken'}/", "report.html")
    assert (tmp_path / "taken").read_text() == "a file"


def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    """Reading a FIFO's head to see whether kennel wrote it blocked for ever (no writer):
    `models compliance --out FIFO` hung; it is now one line, as for any file not a page."""
    import threading

    fifo = tmp_path / "f.html"
    os.mkfifo(fifo)
    said: list[BaseException] = []

    def target() -> None:
        try:
            page_target(fifo, "report.html")
        except BaseException as exc:  # kept for the assertion below
            said.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "page_target blocked on a FIFO"
    assert len(said) == 1 and isinstance(said[0], ConfigError) and "--force" in str(said[0])
