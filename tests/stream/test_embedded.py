"""Pattern 1, embedded: the exported wheel installs with pip, imports neither kennel nor
PyTorch, answers exactly like the Predictor, and powers the example web app over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.wiring import Workspace
from tests.conftest import REPO
from tests.helpers import jpeg
from tests.serving import free_port, served_project, wait_until


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("embedded")
    project = served_project(root, models=1)
    result = CliRunner().invoke(
        app, ["export", "package", "pets@1", "--out", str(root / "dist"), "--json",
              "-C", str(project.root)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    wheel = Path(json.loads(result.output)["wheel"])
    assert wheel.name == "kennel_model_pets-1-py3-none-any.whl"
    target = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(wheel)],
        check=True,
    )  # fmt: skip
    yield project.root, target


def test_the_wheel_needs_no_kennel_and_answers_like_the_predictor(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    project_root, site = installed
    # close to square, 4:3, and wide camera frames (tiled): the same views and judgement
    images = [jpeg(width=180 + i * 20, height=150, seed=i) for i in range(4)]
    images += [jpeg(width=640, height=360, seed=9), jpeg(width=200, height=480, seed=10)]
    for i, data in enumerate(images):
        (tmp_path / f"{i}.jpg").write_bytes(data)
    script = (
        "import json, sys, glob\n"
        "import kennel_model_pets as m\n"
        "out = [m.predict(f) for f in sorted(glob.glob(sys.argv[1] + '/*.jpg'))]\n"
        "print(json.dumps({'out': out, 'mods': sorted(k for k in sys.modules\n"
        "    if k.split('.')[0] in ('kennel', 'torch'))}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n" + script,
         str(tmp_path)],
        capture_output=True, text=True, env=env, check=True, cwd=tmp_path,
    )  # fmt: skip
    answer = json.loads(done.stdout)
    assert answer["mods"] == []
    ws = Workspace.load(project_root)
    try:
        predictor = ws.predictor("pets@1")
    finally:
        ws.close()
    for data, embedded in zip(images, answer["out"], strict=True):
        expected = predictor.predict_one(data)
        assert embedded["label"] == expected.label
        assert embedded["model"] == {"name": "pets", "version": 1}
        for label, p in expected.probabilities.items():
            assert embedded["probabilities"][label] == pytest.approx(p, abs=1e-6)
        assert embedded["pet"] == expected.pet and expected.pet is not None
        assert embedded["pet_score"] == pytest.approx(expected.pet_score, abs=1e-6)


def test_example_web_app_classifies_an_upload_over_http(
    installed: tuple[Path, Path],
) -> None:
    project_root, site = installed
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "KENNEL_MODEL_PACKAGE": "kennel_model_pets",
        "PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "embedded_webapp" / "app.py")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(base + "/", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=30)
        page = httpx.get(base + "/").text
        assert '<form action="/classify"' in page and "pets@1" in page
        data = jpeg(seed=7)
        html_answer = httpx.post(base + "/classify", files={"file": ("p.jpg", data)})
        assert html_answer.status_code == 200 and "It is a <b>" in html_answer.text
        answer = httpx.post(
            base + "/classify",
            files={"file": ("p.jpg", data)},
            headers={"accept": "application/json"},
        ).json()
        ws = Workspace.load(project_root)
        try:
            expected = ws.predictor("pets@1").predict_one(data)
        finally:
            ws.close()
        assert answer["label"] == expected.label
        assert answer["confidence"] == pytest.approx(expected.confidence, abs=1e-6)
        bad = httpx.post(
            base + "/classify",
            files={"file": ("x.jpg", b"not an image")},
            headers={"accept": "application/json"},
        )
        assert bad.status_code == 400 and "not a readable image" in bad.json()["error"]
    finally:
        proc.terminate()
        proc.wait(10)
