"""The distribution: its name is kennel's own on the public index, and a built wheel installs
and runs with everything it needs at run time (migrations, page templates)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_built_wheel_installs_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(REPO)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    [wheel] = list(dist.glob("*.whl"))
    assert wheel.name.startswith("kennel_mlops-")  # not the unrelated `kennel` on the index
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(site)}
    script = (
        "import kennel, sys; from kennel import pages; from kennel.config import init_project;"
        "from kennel.wiring import Workspace;"
        "assert kennel.__file__.startswith(sys.argv[1]), kennel.__file__;"
        "ws = Workspace(init_project(sys.argv[2])[0]); ws.db; ws.close();"
        "print(len(pages.render('base.html')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(site), str(tmp_path / "proj")],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert int(out.stdout) > 500  # the layout rendered from the installed templates
    version = subprocess.run(
        [sys.executable, "-m", "kennel.cli", "--version"], env=env, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert version.stdout.strip() == "kennel 0.1.0"
