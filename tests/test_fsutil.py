"""Where a page asked for by path is written (``kennel.fsutil.page_target``): a report sent by
mistake to a project's kennel.yaml, or as root to /etc/passwd, replaced that file."""

from __future__ import annotations

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
