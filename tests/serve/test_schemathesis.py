"""Property-based fuzzing of the live service against its own OpenAPI document."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kennel.serve.server import start_in_thread
from kennel.wiring import Workspace
from tests.serving import served_project


def test_openapi_fuzzing_finds_no_server_error(tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.fail("schemathesis is a dev dependency; `make test` installs it")
    project = served_project(tmp_path, models=1)
    ws = Workspace(project)
    ws.registry.set_alias("pets", "production", 1, actor="test", reason="fuzz")
    admin, _ = ws.tokens.create("admin", "fuzzer")
    running = start_in_thread(ws.service("production"))
    try:
        result = subprocess.run(
            [
                st,
                "run",
                f"{running.url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "100",
                "--header",
                f"Authorization: Bearer {admin}",
                "--generation-deterministic",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        running.stop()
        ws.close()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", result.stdout)
    cases = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert tested is not None and cases is not None, result.stdout[-3000:]
    assert int(tested.group(1)) == 8  # every operation of the OpenAPI document
    assert int(cases.group(1)) == int(cases.group(2)) >= 800  # about 100+ per operation
