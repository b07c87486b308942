"""Explainability on logged predictions: occlusion saliency through the model version that
answered, and error analysis of a labelled window."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import Project
from kennel.datasets.synth import render
from kennel.monitor import analyze
from kennel.monitor.window import Window
from kennel.serve.predlog import PredictionLog, row_of
from kennel.wiring import Workspace


def test_saliency_of_a_logged_prediction_points_at_the_animal(
    park_model: Project, tmp_path: Path
) -> None:
    ws = Workspace(park_model)
    predictor = ws.predictor("pets@1")
    log = PredictionLog(ws.db, tmp_path / "spool.jsonl", inputs=ws.content)
    log.start()
    logged = []
    for i in range(40):
        label, data = render(i, seed=21)
        p = predictor.predict_one(data)
        if p.label == label and label != "empty":
            digest = hashlib.sha256(data).hexdigest()
            log.add(
                row_of(p, environment="saliency-test", source="cam-9", input_sha256=digest,
                       data=data)
            )  # fmt: skip
            logged.append(p.id)
        if len(logged) == 3:
            break
    log.stop()
    ws.close()
    top, bottom = [], []
    for prediction_id in logged:
        out = tmp_path / f"{prediction_id}.html"
        args = ["analyze", "saliency", prediction_id, "--out", str(out), "--grid", "4", "--json"]
        result = CliRunner().invoke(app, [*args, "-C", str(park_model.root)])
        assert result.exit_code == 0, result.output
        drop = np.array(json.loads(result.output)["map"])
        assert drop.shape == (4, 4) and "data:image/png;base64," in out.read_text()
        top.append(drop[:1].max())  # sky: the simulator never draws an animal there
        bottom.append(drop[2:].max())  # the lawn, where the animals stand
    # covering part of the animal costs the label clearly more evidence than covering the sky
    # (log-odds, which do not saturate on a confident model; here 0.78 against 0.17)
    assert np.mean(bottom) > max(2 * np.mean(top), 0.1), (top, bottom)
    missing = CliRunner().invoke(
        app, ["analyze", "saliency", "feedbeef", "-C", str(park_model.root)]
    )
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
