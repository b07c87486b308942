"""The real CCTV clip (a dog crossing a park lawn) through ``kennel watch`` with a model
trained on the real 10k Dogs-vs-Cats photos."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import Project
from kennel.pipeline.build import BuildOptions
from kennel.wiring import Workspace
from tests.conftest import TINY_TRAIN, make_project


@pytest.fixture(scope="module")
def real_model(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """EfficientNet-Lite0 (ImageNet weights, every block frozen and cached, a new head
    trained) on 1,000 photos sampled from the 10k set: small enough for CI."""
    root = tmp_path_factory.mktemp("dogclip")
    with zipfile.ZipFile(shared_data / "dogs-vs-cats-10k.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        for name in random.Random(0).sample(names, 1000):
            (root / "lake").mkdir(exist_ok=True)
            (root / "lake" / Path(name).name).write_bytes(archive.read(name))
    train = {**TINY_TRAIN, "arch": "efficientnet_lite0", "image_size": 128, "epochs": 3}
    project = make_project(root / "p", sections={"train": {**train, "frozen_blocks": 16}})
    ws = Workspace(project)
    try:
        ws.ingestor().run(ws.source(str(root / "lake")), "pets10k")
        ws.builder().build("pets10k", BuildOptions(trials=1))
        assert ws.registry.resolve("pets@1").metrics["accuracy"] >= 0.9
    finally:
        ws.close()
    return project


def test_the_dog_clip_is_called_dog_faster_than_real_time(
    real_model: Project, shared_data: Path
) -> None:
    clip = shared_data / "videos" / "dog.mp4"
    result = CliRunner().invoke(
        app,
        ["watch", str(clip), "--model", "pets@1", "--fps", "8", "--json",
         "-C", str(real_model.root)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    dog_share = stats["labels"].get("dog", 0) / stats["frames_scored"]
    assert stats["frames_scored"] >= 60 and dog_share > 0.5, stats["labels"]
    assert stats["realtime_factor"] > 1.0, stats
    assert stats["events"] and stats["events"][0]["label"] == "dog"
