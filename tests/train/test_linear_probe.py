"""The ``best`` preset's recipe on real photos (the mini zip, at a small size to stay fast): a
frozen ImageNet EfficientNet-Lite2 whose embeddings ONNX Runtime computes once, a linear
classifier trained on them, and flip averaging inside the exported graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from typer.testing import CliRunner

from kennel import onnxrt
from kennel.cli.main import app
from kennel.config import PRESETS, TrainConfig
from kennel.errors import ConfigError
from kennel.pipeline.build import BuildOptions
from kennel.progress import silent
from kennel.serve.runtime import MODEL
from kennel.train import embeddings, probe
from kennel.train.data import ImageSet
from kennel.train.models import EfficientNetLite
from kennel.train.pretrained import weights_path
from kennel.wiring import Workspace
from tests.conftest import make_project


def test_presets_fill_what_the_section_leaves_out() -> None:
    best = TrainConfig.model_validate({"preset": "best"})
    assert best.arch == "efficientnet_lite2" and best.freeze_backbone and best.tta_flip
    assert TrainConfig.model_validate({"preset": "best", "epochs": 5}).epochs == 5
    assert TrainConfig.model_validate({"preset": "quick"}) == TrainConfig()
    # on the command line a preset replaces kennel.yaml's values; other options replace it
    applied = BuildOptions(preset="best", epochs=2).apply(TrainConfig())
    assert applied.image_size == PRESETS["best"]["image_size"] and applied.epochs == 2
    with pytest.raises(ConfigError, match=r"train\.preset"):
        BuildOptions(preset="fastest").apply(TrainConfig())
    with pytest.raises(ConfigError, match="freeze_backbone"):
        BuildOptions(preset="best", arch="small_cnn").apply(TrainConfig())


def test_embeddings_match_pytorch_and_are_computed_once(tmp_path: Path) -> None:
    model = EfficientNetLite(2).eval()
    path = tmp_path / "images.npy"
    rng = np.random.default_rng(0)
    np.save(path, rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8))
    images = np.load(path, mmap_mode="r")
    steps: list[int] = []
    first = embeddings.embeddings(model, images, np.arange(5), mirrored=True, step=steps.append)
    again = embeddings.embeddings(model, images, np.arange(5), mirrored=True, step=steps.append)
    assert again is first and steps == [5, 5]
    x = torch.from_numpy(np.ascontiguousarray(images[:, :, ::-1])).permute(0, 3, 1, 2)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.embed((x.float() / 255 - mean) / std).numpy()
    np.testing.assert_allclose(first, expected, atol=1e-4)
    other = embeddings.embeddings(model, images, np.arange(5), mirrored=False)
    assert other is not first  # another view is another entry


def test_probe_trains_on_each_image_as_it_is_and_validates_on_both_views(tmp_path: Path) -> None:
    model = EfficientNetLite(2).eval()
    path = tmp_path / "images.npy"
    np.save(path, np.random.default_rng(2).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8))
    data = ImageSet(
        np.load(path, mmap_mode="r"), np.array([0, 1, 0, 1, 0, 1]), np.array(["train"] * 6),
        (), ("cat", "dog"),
    )  # fmt: skip
    cfg = TrainConfig.model_validate({"preset": "best", "image_size": 64, "augment": 0.6})
    train, train_y, val, val_y = probe.inputs(
        model, cfg, data, np.arange(4), np.arange(4, 6), silent
    )
    # one row per training image, augment or not: no mirrored copies to pay for
    assert train.shape == (4, 1280) and train_y.tolist() == [0, 1, 0, 1]
    plain = embeddings.embeddings(model, data.images, np.arange(4, 6))
    mirrored = embeddings.embeddings(model, data.images, np.arange(4, 6), mirrored=True)
    np.testing.assert_allclose(val.numpy(), (plain + mirrored) / 2, atol=1e-6)
    assert val_y.tolist() == [0, 1]


def test_best_preset_trains_only_the_classifier_and_averages_flips_in_the_graph(
    shared_data: Path, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "p", workers=1)
    root = str(project.root)
    runner = CliRunner()
    source = str(shared_data / "dogs-vs-cats-mini.zip")
    assert runner.invoke(app, ["data", "ingest", source, "-d", "mini", "-C", root]).exit_code == 0
    args = ["train", "-d", "mini", "--preset", "best", "--image-size", "160"]
    result = runner.invoke(app, [*args, "--trials", "1", "--json", "-C", root])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    params = out["params"]
    assert params["preset"] == "best" and params["arch"] == "efficientnet_lite2"
    assert params["freeze_backbone"] and params["tta_flip"] and params["image_size"] == 160
    assert out["parity"]["passed"]
    # real photos, 40 test images: frozen ImageNet features separate cats from dogs (any
    # reasonable classifier on them; a coin scores 0.5)
    assert out["evaluation"]["accuracy"] >= 0.8, out["evaluation"]["accuracy"]
    ws = Workspace(project)
    try:
        model = ws.registry.resolve(out["model"]["ref"])
        onnx_model = ws.registry.read_file(model, MODEL)
        run = ws.tracker.get(out["run_id"])
        trained = safetensors.torch.load(ws.content.get(run.metrics["weights_sha256"]))
    finally:
        ws.close()
    # only the classifier moved: every backbone tensor is still ImageNet's
    imagenet = torch.load(weights_path("efficientnet_lite2"), map_location="cpu", weights_only=True)
    backbone = [k for k in trained if not k.startswith("_fc.")]
    assert backbone and all(torch.equal(trained[k], imagenet[k]) for k in backbone)
    assert trained["_fc.weight"].shape == (2, 1280)
    # the bundle's graph averages each image with its mirror image: a picture and its mirror
    # get the same answer from the model as shipped
    x = np.random.default_rng(1).normal(0, 1, (3, 3, 160, 160)).astype(np.float32)
    sess = onnxrt.session(onnx_model)
    plain, mirrored = (onnxrt.run(sess, v)[0] for v in (x, np.ascontiguousarray(x[..., ::-1])))
    np.testing.assert_allclose(plain, mirrored, atol=1e-4)
