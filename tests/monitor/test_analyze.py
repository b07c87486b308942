"""Explainability on logged predictions: occlusion saliency through the model version that
answered, and error analysis of a labelled window."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import Project
from kennel.datasets.synth import render
from kennel.errors import NotFoundError
from kennel.monitor import analyze
from kennel.monitor.window import Window
from kennel.package.export import to_onnx
from kennel.serve.predlog import PredictionLog, row_of
from kennel.serve.runtime import METADATA
from kennel.wiring import Workspace
from tests.conftest import make_project
from tests.serving import replaced_model

# The simulator's orange fur (animals.FUR): nothing else in its park (sky, lawn, path, trees,
# benches, the camera's white time stamp) comes within ORANGE_RADIUS of it.
ORANGE, ORANGE_RADIUS = (205.0, 120.0, 50.0), 60.0


class OrangeFurModel(torch.nn.Module):
    """A classifier over (cat, dog, empty) whose behaviour is fixed by construction, not by
    training: the "dog" log-odds grow with the share of the picture covered in orange fur
    (each pixel counts by its closeness to the fur colour). On the park's scenes that share
    lies in the animal and nowhere else, so whatever CPU runs it, covering the animal must cost
    the answer much more evidence than covering the sky."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.register_buffer("fur", torch.tensor(ORANGE).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = (x * self.std + self.mean) * 255.0
        closeness = torch.relu(1 - ((rgb - self.fur) ** 2).sum(1) / ORANGE_RADIUS**2)
        share = closeness.mean(dim=(1, 2))
        dog = 200.0 * share - 2.0  # 1 % of the picture in orange fur: even odds against cat
        logits = torch.stack([torch.zeros_like(dog), dog, torch.full_like(dog, -10.0)], 1)
        return logits, torch.stack([share, closeness.amax(dim=(1, 2))], 1)


def _orange_share(cell: np.ndarray) -> float:
    distance = np.sqrt(((cell.astype(np.float64) - ORANGE) ** 2).sum(-1))
    return float(np.clip(1 - (distance / ORANGE_RADIUS) ** 2, 0, None).mean())


def _fur_project(
    park_model: Project, tmp_path: Path, frame: dict[str, object] | None = None
) -> Project:
    """A project with the park bundle's :class:`OrangeFurModel` twin registered as fur@1 (with
    the frame policy ``frame``, where given)."""
    ws = Workspace(park_model)
    trained = ws.registry.resolve("pets@1")
    files = {name: ws.registry.read_file(trained, name) for name in trained.files}
    ws.close()
    meta = json.loads(files[METADATA])
    size, pre = meta["input"]["shape"][2], meta["preprocessing"]
    onnx_model = to_onnx(OrangeFurModel(pre["mean"], pre["std"]), size)
    # the park model's embedding reference (and the "no pet" judgement drawn from it) does
    # not describe this model's embedding
    meta["reference"].pop("embedding_pca", None)
    if frame is not None:
        pre["frame"] = frame
    no_pca = {**files, METADATA: json.dumps(meta).encode()}
    project = make_project(tmp_path / "p", workers=1, labels=["cat", "dog", "empty"])
    ws = Workspace(project)
    ws.registry.register(
        "fur",
        lambda version: replaced_model(no_pca, version, onnx_model, name="fur"),
        run_id=None, dataset=None, dataset_version=None, metrics={}, gates_passed=True,
        gate_reasons=[], actor="test",
    )  # fmt: skip
    ws.close()
    return project


def test_saliency_of_a_wide_frame_finds_the_pet_at_its_edge(
    park_model: Project, tmp_path: Path
) -> None:
    """A wide CCTV frame served through the tiles policy, the pet at its left edge and nothing
    but a grey wall in its centre square: the map covers the whole frame and points at the pet
    (a map of the centre square alone would see only the wall)."""
    ws = Workspace(_fur_project(park_model, tmp_path, {"policy": "tiles", "max_aspect": 1.5}))
    predictor = ws.predictor("fur@1")
    ws.close()
    scene = next(
        picture
        for i in range(400)
        if _orange_share(picture := np.asarray(Image.open(io.BytesIO(render(i, seed=21)[1]))))
        > 0.02
    )
    wall = np.full_like(scene, 90)
    wide = np.concatenate([scene, wall, wall], axis=1)  # 600 x 200
    grid = 6
    label, drop = analyze.occlusion(predictor, Image.fromarray(wide), grid=grid)
    assert label == "dog" and drop.shape == (grid, grid)
    fur = _fur_cells(wide, grid)
    assert fur[:, 2:].max() == 0  # the wall
    assert fur.flat[drop.argmax()] > 0.01 and drop.max() > 1.0, (drop, fur)
    assert np.abs(drop[:, 2:]).max() < 0.05, drop  # covering the wall changes nothing
    # the logged label is what is explained, whatever the model answers now
    cat, _ = analyze.occlusion(predictor, Image.fromarray(wide), grid=2, label="cat")
    assert cat == "cat"
    overlay = analyze.overlay_map(Image.fromarray(wide), drop)
    assert overlay.size == (256, 85)  # the whole frame, not its centre square


def _fur_cells(picture: np.ndarray, grid: int) -> np.ndarray:
    rows = np.linspace(0, picture.shape[0], grid + 1).astype(int)
    cols = np.linspace(0, picture.shape[1], grid + 1).astype(int)
    return np.array(
        [[_orange_share(picture[rows[r] : rows[r + 1], cols[c] : cols[c + 1]])
          for c in range(grid)] for r in range(grid)]
    )  # fmt: skip


def test_saliency_of_a_logged_prediction_points_at_the_animal(
    park_model: Project, tmp_path: Path
) -> None:
    """Through the real path (a registered bundle, a logged prediction with its kept input,
    ``kennel analyze saliency``), the map points at what the served model relies on. The model
    is :class:`OrangeFurModel` in the park bundle's place, so the margin does not depend on
    what training happened to learn on this machine's kernels."""
    project = _fur_project(park_model, tmp_path)
    ws = Workspace(project)
    predictor = ws.predictor("fur@1")
    log = PredictionLog(ws.db, tmp_path / "spool.jsonl", inputs=ws.content)
    log.start()
    logged = []
    for i in range(400):
        _, data = render(i, seed=21)
        p = predictor.predict_one(data)
        if p.label == "dog" and p.confidence > 0.99:  # an orange animal in the picture
            digest = hashlib.sha256(data).hexdigest()
            log.add(
                row_of(p, environment="saliency-test", source="cam-9", input_sha256=digest,
                       data=data)
            )  # fmt: skip
            logged.append((p.id, data))
        if len(logged) == 3:
            break
    log.stop()
    ws.close()
    assert len(logged) == 3
    grid = 4
    for prediction_id, data in logged:
        out = tmp_path / f"{prediction_id}.html"
        args = ["analyze", "saliency", prediction_id, "--out", str(out), "--grid", str(grid)]
        result = CliRunner().invoke(app, [*args, "--json", "-C", str(project.root)])
        assert result.exit_code == 0, result.output
        drop = np.array(json.loads(result.output)["map"])
        assert drop.shape == (grid, grid) and "data:image/png;base64," in out.read_text()
        # the cells of the picture that hold the animal
        fur = _fur_cells(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), grid)
        animal, elsewhere = drop[fur > 0.01], drop[fur == 0]
        # covering the animal costs the answer log-odds; covering the sky (the top row: the
        # simulator never draws an animal there) or any other fur-free cell costs nothing
        assert animal.max() > 1.0, (drop, fur)
        assert np.abs(drop[0]).max() < 0.05 and np.abs(elsewhere).max() < 0.05, (drop, fur)
        assert fur.flat[drop.argmax()] > 0.01  # the map's hottest cell holds the animal
    missing = CliRunner().invoke(app, ["analyze", "saliency", "feedbeef", "-C", str(project.root)])
    assert missing.exit_code == 3 and "not found" in missing.output


def test_error_analysis_by_slice(park_model: Project) -> None:
    ws = Workspace(park_model)
    predictor = ws.predictor("pets@1")
    ws.close()
    images = [render(i, seed=31, scenario="night" if i % 2 else "day") for i in range(60)]
    predictions = predictor.predict([d for _, d in images])
    window = Window.of(predictions, [label for label, _ in images],
                      sources=["cam-night" if i % 2 else "cam-day" for i in range(60)])  # fmt: skip
    result = analyze.errors(window)
    assert result["labelled"] == 60
    slices = result["slices"]
    assert slices["camera=cam-night"]["n"] == 30
    # the day-trained model errs more on the night camera
    assert slices["camera=cam-night"]["error_rate"] > slices["camera=cam-day"]["error_rate"]
    assert result["errors"] == sum(result["confusions"].values())
    assert all(w["truth"] != w["predicted"] for w in result["worst"])


def test_saliency_of_tiny_and_huge_pictures(park_model: Project, tmp_path: Path) -> None:
    """A grid finer than the picture: cells that cover no pixel are 0 and the overlay puts
    each cell's red over the pixels it covered. A huge picture is explained on a copy twice
    the model's input on its shorter side. A label the model lacks is refused, by name."""
    ws = Workspace(_fur_project(park_model, tmp_path, {"policy": "tiles", "max_aspect": 1.5}))
    predictor = ws.predictor("fur@1")
    ws.close()
    tiny = np.full((5, 5, 3), 90, np.uint8)
    tiny[0, 0] = ORANGE
    label, drop = analyze.occlusion(predictor, Image.fromarray(tiny), grid=32)
    assert label == "dog" and drop.shape == (32, 32)
    hot = np.argwhere(drop > 0.5)
    assert len(hot) == 1 and drop[hot[0][0], hot[0][1]] == drop.max()
    overlay = np.asarray(analyze.overlay_map(Image.fromarray(tiny), drop, size=50))
    assert overlay.shape == (50, 50, 3)
    assert overlay[5, 5, 0] > 200 and overlay[5, 5, 1] < 100  # red over the orange pixel...
    assert abs(int(overlay[30, 30, 0]) - 90) < 5  # ... and the wall as it is

    seen: list[tuple[int, int]] = []
    views_of = predictor.views_of

    def recorded(image: Image.Image) -> np.ndarray:
        seen.append(image.size)
        return views_of(image)

    predictor.views_of = recorded  # type: ignore[method-assign]
    huge = np.full((1500, 4500, 3), 90, np.uint8)
    huge[600:900, 300:700] = ORANGE
    label, drop = analyze.occlusion(predictor, Image.fromarray(huge), grid=3)
    side = 2 * predictor.bundle.image_size
    assert label == "dog" and {min(s) for s in seen} == {side}  # every copy shrunk
    assert drop[1, 0] == drop.max() > 1.0  # the fur's cell
    with pytest.raises(NotFoundError, match="'horse' is not one of fur@1's labels"):
        analyze.occlusion(predictor, Image.fromarray(tiny), grid=2, label="horse")


def test_a_picture_one_pixel_high_is_drawn_one_pixel_high() -> None:
    """A 20,000 x 1 picture (the service takes it) shrank to 256 x 0 and the saliency PNG
    failed with a 500; its longer side is 256 and its shorter at least one pixel."""
    for size in ((20_000, 1), (1, 20_000), (3, 2_000)):
        picture = Image.new("RGB", size, (90, 90, 90))
        drop = np.zeros((8, 8))
        drop[0, 0] = 1.0
        overlay = analyze.overlay_map(picture, drop)
        assert max(overlay.size) == 256 and min(overlay.size) == 1
        overlay.save(io.BytesIO(), "PNG")
