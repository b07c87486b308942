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
from kennel.errors import ConfigError, TrainingError
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
    # --preset quick on a project whose kennel.yaml says best trains the quick recipe
    yaml_best = TrainConfig.model_validate({"preset": "best", "seed": 3})
    quick = BuildOptions(preset="quick").apply(yaml_best)
    assert quick == TrainConfig(seed=3)


def test_every_train_option_reaches_the_torchrun_ranks() -> None:
    from dataclasses import fields

    from kennel.cli.build import _passed_on

    options = BuildOptions(
        preset="best", arch="efficientnet_lite2", epochs=3, trials=1, method="tpe",
        budget_minutes=5, image_size=96, init_from="pets@1", resume="newest", study="s1",
    )  # fmt: skip
    argv = _passed_on(options, json_out=True)
    # each option the command line takes is handed on with its value
    # who started a build (actor, token) is no training option: a rank is told nothing of it
    given = {f.name for f in fields(BuildOptions)} - {"actor", "token", "overrides", "resume"}
    for name in given:
        flag = "--search" if name == "method" else "--" + name.replace("_", "-")
        assert argv[argv.index(flag) + 1] == str(getattr(options, name)), flag
    assert "--resume" in argv and "--json" in argv


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
    # kennel.yaml's search space (lr, weight_decay, augment) is nothing a fitted probe uses:
    # asked for three trials, it trains none
    result = runner.invoke(app, [*args, "--trials", "3", "--json", "-C", root])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [h["epoch"] for h in out["history"]] == [1]  # one convex fit, not epochs
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
        assert ws.tracker.runs(kind="trial") == [] and not out["trials"]
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


def _blobs(n: int, dim: int, seed: int, shift: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of embeddings on very different scales per dimension (as pooled CNN
    features are), apart along a few dimensions only."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    scale = np.exp(np.random.default_rng(99).normal(0, 1.5, dim))  # the same for every draw
    x = rng.normal(0, 1, (n, dim))
    x[:, :4] += shift * (2 * y[:, None] - 1)
    return (x * scale + 3 * scale).astype(np.float32), y


def test_probe_fit_is_standardised_logistic_regression_folded_into_the_classifier() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs(400, 32, 0)
    vx, vy = _blobs(200, 32, 0)[0][:0], np.zeros(0, np.int64)  # no validation images
    model = EfficientNetLite(2, variant="efficientnet_lite0")
    model._fc = torch.nn.Linear(32, 2)
    fitted = probe.fit(model, torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(vx),
                       torch.from_numpy(vy))  # fmt: skip
    assert fitted.c in probe.C_GRID and fitted.cv_accuracy is not None
    assert fitted.cv_accuracy > 0.9  # the classes are apart: any sound fit separates them
    # the folded layer on raw embeddings answers as scikit-learn's scaler + regression does
    test_x, _ = _blobs(300, 32, 5)
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=fitted.c, max_iter=1000))
    reference.fit(x.astype(np.float64), y)
    with torch.no_grad():
        probs = torch.softmax(model._fc(torch.from_numpy(test_x)), 1)[:, 1].numpy()
    np.testing.assert_allclose(probs, reference.predict_proba(test_x)[:, 1], atol=1e-3)
    # deterministic: the same embeddings give the same classifier
    again = EfficientNetLite(2, variant="efficientnet_lite0")
    again._fc = torch.nn.Linear(32, 2)
    probe.fit(again, torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(vx),
              torch.from_numpy(vy))  # fmt: skip
    assert torch.equal(again._fc.weight, model._fc.weight)


def test_probe_reports_validation_and_never_predicts_a_class_it_never_saw() -> None:
    x, y = _blobs(300, 16, 1)
    vx, vy = _blobs(100, 16, 2)
    model = EfficientNetLite(3, variant="efficientnet_lite0")
    model._fc = torch.nn.Linear(16, 3)
    fitted = probe.fit(model, torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(vx),
                       torch.from_numpy(vy))  # fmt: skip
    with torch.no_grad():
        logits = model._fc(torch.from_numpy(vx))
    guesses = logits.argmax(1)
    assert set(guesses.tolist()) <= {0, 1}
    assert float(torch.softmax(logits, 1)[:, 2].max()) < 1e-6  # no share of belief either
    assert fitted.val_accuracy == pytest.approx(float((guesses.numpy() == vy).mean()))
    assert fitted.val_accuracy > 0.9 and fitted.val_loss > 0


def test_probe_needs_two_classes_and_falls_back_when_too_few_to_cross_validate() -> None:
    x, _ = _blobs(10, 8, 3)
    model = EfficientNetLite(2, variant="efficientnet_lite0")
    model._fc = torch.nn.Linear(8, 2)
    empty = torch.zeros((0, 8)), torch.zeros(0, dtype=torch.int64)
    with pytest.raises(TrainingError, match="two classes"):
        probe.fit(model, torch.from_numpy(x), torch.zeros(10, dtype=torch.int64), *empty)
    one_each = torch.tensor([0, 1] + [0] * 8)
    fitted = probe.fit(model, torch.from_numpy(x), one_each, *empty)
    assert fitted.c == probe.C_DEFAULT and fitted.cv_accuracy is None


def test_a_model_that_cannot_be_built_is_one_error_not_a_traceback() -> None:
    """A search space or a warm start can hand the trainer a configuration kennel.yaml's
    validation never saw: a probe on the small CNN, or weights of another class count."""
    from kennel.train.models import SmallCNN
    from kennel.train.trainer import make_model

    probe_on_cnn = TrainConfig.model_validate({"preset": "best"}).model_copy(
        update={"arch": "small_cnn"}
    )
    with pytest.raises(ConfigError, match="efficientnet_lite\\* only, not small_cnn"):
        make_model(probe_on_cnn, 2)
    with pytest.raises(TrainingError, match="--init-from: its weights do not fit"):
        make_model(TrainConfig(), 2, init_state=SmallCNN(3).state_dict())


def test_a_probe_searches_only_the_keys_it_uses(tmp_path: Path) -> None:
    """Of a space over lr and image_size a probe searches image_size alone: trials differing
    in lr would fit the same classifier, and the study would crown an lr that changed nothing."""
    from kennel.datasets.synth import generate

    grid = {"lr": {"values": [0.001, 0.01]}, "image_size": {"values": [64, 96]}}
    probe_train = {"arch": "efficientnet_lite0", "freeze_backbone": True}
    config = TrainConfig.model_validate({**probe_train, "search": {"space": grid}})
    searched, dropped = probe.narrowed(config)
    assert set(searched.search.space) == {"image_size"} and dropped == ("lr",)
    # not a probe in every trial, or not a probe at all: the space is left as it is
    for other in ({**probe_train, "search": {"space": {**grid, "arch": {"values": ["small_cnn"]}}}},
                  {"search": {"space": grid}}):  # fmt: skip
        as_is = TrainConfig.model_validate(other)
        assert probe.narrowed(as_is) == (as_is, ())

    generate(tmp_path / "lake", 60, seed=5)
    project = make_project(
        tmp_path / "p",
        sections={"train": {**probe_train, "search": {"method": "grid", "space": grid}}},
        workers=1,
    )
    root = str(project.root)
    runner = CliRunner()
    ingest = ["data", "ingest", str(tmp_path / "lake"), "-d", "park", "-C", root]
    assert runner.invoke(app, ingest).exit_code == 0
    result = runner.invoke(app, ["train", "-d", "park", "--trials", "4", "--json", "-C", root])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert sorted(t["params"]["image_size"] for t in out["trials"]) == [64, 96]
    assert all(set(t["params"]) == {"image_size"} for t in out["trials"])
