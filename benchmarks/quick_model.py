"""A model trained on real photos in a few minutes, for the video and patterns benchmarks:
EfficientNet-Lite0 with ImageNet weights, every block frozen (features cached), a new head
trained on 1,000 photos sampled from the 10k Dogs-vs-Cats set, 3 epochs; 128 px with the head
convolution trained by default, 224 px with it frozen too for the video benchmark.
It is not the quality benchmark (see train_quality.py); it is a realistic bundle to serve."""

from __future__ import annotations

import os
import random
import zipfile
from pathlib import Path

import yaml

from kennel.config import init_project
from kennel.pipeline.build import BuildOptions
from kennel.wiring import Workspace

SHARED = Path(
    os.environ.get(
        "KENNEL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "datasets"
    )
)


def quick_model(
    root: Path,
    images: int = 1000,
    *,
    image_size: int = 128,
    frozen_blocks: int = 16,
    quantize: bool = False,
) -> Path:
    """A project under ``root`` whose ``production`` alias names the trained model
    (``frozen_blocks=17``: the whole backbone frozen, only the classifier trained;
    ``quantize``: the bundle also keeps an int8 model where packaging finds it pays)."""
    lake = root / "lake"
    lake.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(SHARED / "dogs-vs-cats-10k.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        for name in random.Random(0).sample(names, images):
            (lake / Path(name).name).write_bytes(archive.read(name))
    project, _ = init_project(root / "p")
    config = yaml.safe_load((project.root / "kennel.yaml").read_text())
    config["train"].update(
        arch="efficientnet_lite0",
        image_size=image_size,
        epochs=3,
        frozen_blocks=frozen_blocks,
        search={"trials": 1},
    )
    config["model"]["quantize"] = quantize
    (project.root / "kennel.yaml").write_text(yaml.safe_dump(config))
    ws = Workspace.load(project.root)
    try:
        ws.ingestor().run(ws.source(str(lake)), "pets10k")
        model = ws.builder().build("pets10k", BuildOptions(trials=1)).model
        ws.registry.set_alias(
            model.name, "production", model.version, actor="bench", reason="benchmark"
        )
    finally:
        ws.close()
    return project.root
