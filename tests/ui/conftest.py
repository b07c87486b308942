"""A dashboard over a real project, served by `kennel ui` in its own process, and Debian's
Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kennel.config import Project
from kennel.serve.auth import Identity
from kennel.serve.server import RunningServer
from kennel.wiring import Workspace
from tests.conftest import unavailable
from tests.serving import free_port, served_project, start_env

CHROMIUM = Path(os.environ.get("KENNEL_CHROMIUM", "/usr/bin/chromium"))


@dataclass
class Dashboard:
    url: str
    project: Project
    ws: Workspace
    tokens: dict[str, str]  # role -> secret
    token_ids: dict[str, str]
    production: RunningServer


def start_ui(root: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``kennel ui`` as a user starts it, from the code under test; its output goes to ``log``."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kennel.cli", "ui", "--port", str(port), "-C", str(root)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"kennel ui exited with {proc.returncode}: {said}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("kennel ui did not come up within 60 s")


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """Two tiny versions of ``pets``: v1 certified, approved and released to production, v2
    deployed to staging and certified, awaiting QA. Production and staging run in this
    process; the dashboard runs as ``kennel ui`` in its own. One for the whole session: every
    browser test module shares it (training its models is most of the suite's time)."""
    root = tmp_path_factory.mktemp("ui")
    project = served_project(root, models=2)
    ws = Workspace(project)
    tokens, ids = {}, {}
    for role, name in (("qa", "quinn"), ("operator", "olga"), ("viewer", "vera"),
                       ("admin", "ada")):  # fmt: skip
        tokens[role], who = ws.tokens.create(role, name)
        ids[role] = who.token_id
    staging = start_env(ws, "staging")
    production = start_env(ws, "production")
    ui = None
    try:
        releases = ws.releases()
        ops = Identity(ids["operator"], "olga", "operator")
        assert releases.deploy("pets@1", "staging", who=ops).certification.passed
        releases.decide("pets@1", "approved", who=Identity(ids["qa"], "quinn", "qa"), note="ok")
        releases.release("pets@1", "production", who=ops)
        assert releases.deploy("pets@2", "staging", who=ops).certification.passed
        port = free_port()
        ui = start_ui(project.root, port, root / "ui.log")
        yield Dashboard(f"http://127.0.0.1:{port}", project, ws, tokens, ids, production)
    finally:
        if ui is not None:
            ui.terminate()
            ui.wait(10)
            # the dashboard logged no failure of its own while the tests drove it
            assert "Traceback" not in (root / "ui.log").read_text(errors="replace")
        staging.stop()
        production.stop()
        ws.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(browser: Any, dash: Dashboard, role: str, path: str = "/") -> Any:
    """A fresh browser context signed in with ``role``'s token; returns its page at ``path``."""
    context = browser.new_context(base_url=dash.url)
    page = context.new_page()
    page.goto(f"/login?next={path}")
    page.fill("#token", dash.tokens[role])
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(re.escape(dash.url + path) + r"$"))
    return page


def axe_problems(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page, one line each."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
