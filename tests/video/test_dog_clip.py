"""The real CCTV clip (a dog crossing a park lawn, 640x360) through ``kennel watch`` with a model
trained on the real Dogs-vs-Cats photos, under the default whole-frame policy (tiles); and
frames with no cat or dog in them, which must give no pet event from the same model."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import Project
from kennel.pipeline.build import BuildOptions
from kennel.video import nonpet
from kennel.video.events import NO_PET
from kennel.wiring import Workspace
from tests.conftest import TINY_TRAIN, make_project

PHOTOS = 1000


@pytest.fixture(scope="module")
def real_model(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """EfficientNet-Lite0 at 224 px with its ImageNet backbone frozen whole (a linear probe:
    ONNX Runtime embeds each photo once, the classifier is fitted to the embeddings) on 1,000
    photos sampled from the 10k set: small enough for CI (a minute where caching the frozen
    features in PyTorch and training the classifier for epochs took three), and the bundle
    carries the ImageNet pet judgement and the tiles frame policy."""
    root = tmp_path_factory.mktemp("dogclip")
    with zipfile.ZipFile(shared_data / "dogs-vs-cats-10k.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        for name in random.Random(0).sample(names, PHOTOS):
            (root / "lake").mkdir(exist_ok=True)
            (root / "lake" / Path(name).name).write_bytes(archive.read(name))
    train = {**TINY_TRAIN, "arch": "efficientnet_lite0", "image_size": 224}
    project = make_project(root / "p", sections={"train": {**train, "freeze_backbone": True}})
    ws = Workspace(project)
    try:
        ws.ingestor().run(ws.source(str(root / "lake")), "pets10k")
        ws.builder().build("pets10k", BuildOptions(trials=1))
        meta = ws.registry.resolve("pets@1")
        assert meta.metrics["accuracy"] >= 0.9
    finally:
        ws.close()
    return project


def _watch(project: Project, clip: Path, *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["watch", str(clip), "--model", "pets@1", "--json", "-C", str(project.root), *extra]
    )
    assert result.exit_code == 0, result.output
    stats: dict[str, Any] = json.loads(result.output)
    return stats


@pytest.fixture(scope="module")
def dog_clip(real_model: Project, shared_data: Path) -> dict[str, Any]:
    return _watch(real_model, shared_data / "videos" / "dog.mp4")  # default sampling, 5 fps


def test_the_dog_clip_is_called_dog_on_whole_frames(dog_clip: dict[str, Any]) -> None:
    stats = dog_clip
    assert stats["frames_scored"] >= 40, stats
    dog_share = stats["labels"].get("dog", 0) / stats["frames_scored"]
    assert dog_share >= 0.9, stats["labels"]
    events = stats["events"]
    assert events and events[0]["label"] == "dog" and events[0]["t"] < 1.0, events
    assert not [e for e in events if e["label"] == "cat"], events
    # the pet judgement sees the dog too: no "no pet" between arrival and the end
    assert stats["no_pet_frames"] <= 0.1 * stats["frames_scored"], stats
    assert stats["realtime_factor"] > 1.0, stats


def _clip(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    try:
        for rgb in frames:
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def test_every_frame_of_the_dog_clip_is_one_dog_event_by_default(
    real_model: Project, shared_data: Path
) -> None:
    """--fps 0 scores all 24 frames a second: by default the hold of 3 frames keeps its 0.6 s
    (15 frames), so the frames misread along the way announce no cat."""
    clip = shared_data / "videos" / "dog.mp4"
    stats = _watch(real_model, clip, "--fps", "0")
    assert stats["frames_scored"] >= 200, stats
    events = stats["events"]
    assert [e["label"] for e in events] == ["dog"] and events[0]["t"] < 1.0, events


def test_frames_without_a_pet_give_no_pet_event_while_the_dog_is_still_announced(
    real_model: Project, shared_data: Path, dog_clip: dict[str, Any], tmp_path: Path
) -> None:
    capture = cv2.VideoCapture(str(shared_data / "videos" / "dog.mp4"))
    clip_frames = []
    while (got := capture.read())[0]:
        clip_frames.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
    capture.release()
    shown: list[np.ndarray] = []
    for kind in nonpet.KINDS:  # two seconds of each, each picture held for half a second
        for picture in nonpet.frames(kind, 4, seed=1, clip=clip_frames):
            shown += [picture] * 5
    stats = _watch(real_model, _clip(tmp_path / "no-pet.mp4", shown))
    assert stats["frames_scored"] >= 50, stats
    assert [e for e in stats["events"] if e["label"] != NO_PET] == [], stats["events"]
    assert stats["no_pet_frames"] >= 0.8 * stats["frames_scored"], stats
    # the same model, on the real clip: the dog is announced
    assert [e["label"] for e in dog_clip["events"]][:1] == ["dog"]
