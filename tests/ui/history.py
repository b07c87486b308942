"""A park's recent past, written through kennel's stores: monitoring windows (a day of good
accuracy, then a night whose drift and dog bias raise alerts), the prediction log behind them
with some feedback, camera telemetry, and optionally a study of tuning trials. The Monitoring
and Predictions tests, the README's screenshots and benchmarks/ui_pages.py read it."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from kennel.db.monitoring import MonitorRun, MonitorRunStore
from kennel.db.predictions import LoggedPrediction, PredictionStore
from kennel.db.telemetry import Sample, TelemetryStore
from kennel.govern.alerts import Alert, AlertStore
from kennel.wiring import Workspace

CAMERAS = ("cam-gate", "cam-pond", "cam-meadow")
LABELS = ("cat", "dog")


@dataclass
class History:
    environment: str
    since: datetime
    until: datetime
    runs: list[MonitorRun] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    predictions: int = 0
    feedback: int = 0
    telemetry: int = 0
    trials: int = 0


def _metrics(night: bool, n: int, rng: random.Random) -> dict[str, float]:
    """One window's metrics as kennel.monitor.runner.analyse names them."""
    accuracy = rng.uniform(0.58, 0.68) if night else rng.uniform(0.92, 0.97)
    dog_bias = rng.uniform(1.35, 1.5) if night else rng.uniform(0.97, 1.04)
    psi = rng.uniform(0.35, 0.6) if night else rng.uniform(0.01, 0.05)
    return {
        "window.n": float(n),
        "performance.labelled": float(n // 5),
        "performance.accuracy": accuracy,
        "performance.estimated_accuracy": accuracy + rng.uniform(-0.04, 0.04),
        "performance.macro_f1": accuracy - 0.01,
        "performance.recall.cat": accuracy - (0.25 if night else 0.01),
        "performance.recall.dog": min(1.0, accuracy + (0.2 if night else 0.01)),
        "fairness.recall_gap": 0.45 if night else 0.02,
        "fairness.predicted_rate_ratio.dog": dog_bias,
        "fairness.predicted_rate_ratio.cat": 2.0 - dog_bias,
        "drift.drifted": 1.0 if night else 0.0,
        "drift.image.brightness.p_value": 1e-6 if night else rng.uniform(0.2, 0.9),
        "drift.image.brightness.psi": psi,
        "drift.prediction.class.p_value": 1e-4 if night else rng.uniform(0.2, 0.9),
        "drift.prediction.class.psi": psi / 3,
        "drift.embedding.p_value": 0.001 if night else rng.uniform(0.2, 0.9),
        "integrity.decode_failure_rate": rng.uniform(0.0, 0.01),
        "integrity.low_confidence_rate": rng.uniform(0.3, 0.45) if night else rng.uniform(0, 0.08),
        "integrity.size_anomaly_rate": 0.0,
        "latency.p50_ms": rng.uniform(3.0, 4.0),
        "latency.p99_ms": rng.uniform(9.0, 14.0),
        "telemetry.anomalies": 2.0 if night else 0.0,
    }


def populate(
    ws: Workspace,
    *,
    windows: int = 36,
    window: timedelta = timedelta(hours=1),
    predictions: int = 2000,
    feedback_every: int = 10,
    trials: int = 0,
    environment: str = "production",
    until: datetime | None = None,
    seed: int = 7,
) -> History:
    """``windows`` monitoring windows of ``window`` ending at ``until`` (default now), the last
    third of them at night; ``predictions`` spread over them (every ``feedback_every``-th
    labelled); a temperature and a humidity reading per camera per window quarter; the alert
    rules evaluated on the newest window (alerts are raised now); ``trials`` trials."""
    rng = random.Random(seed)
    end = until or datetime.now(UTC)
    start = end - windows * window
    night_from = start + (windows - windows // 3) * window
    history = History(environment, start, end)
    model = ws.project.config.model.name
    runs = MonitorRunStore(ws.db)
    for i in range(windows):
        since = start + i * window
        night = since >= night_from
        metrics = _metrics(night, max(1, predictions // windows), rng)
        run = MonitorRun(uuid.uuid4().hex, since + window, environment, since, since + window,
                         model, 1, [1], metrics, None)  # fmt: skip
        history.runs.append(runs.add(run, actor="kennel-monitor", n=int(metrics["window.n"])))
    history.alerts = (
        AlertStore(ws.db)
        .evaluate(ws.project.config.monitor.rules, history.runs[-1].metrics, subject=environment)
        .opened
    )
    history.predictions, history.feedback = _predictions(
        ws, rng, predictions, feedback_every, environment, model, start, end, night_from
    )
    history.telemetry = _telemetry(ws, rng, start, end, window, night_from)
    if trials:
        history.trials = _trials(ws, rng, trials)
    return history


def _predictions(
    ws: Workspace,
    rng: random.Random,
    n: int,
    feedback_every: int,
    environment: str,
    model: str,
    start: datetime,
    end: datetime,
    night_from: datetime,
) -> tuple[int, int]:
    store = PredictionStore(ws.db)
    span = (end - start).total_seconds()
    batch: list[LoggedPrediction] = []
    truths: list[tuple[str, str]] = []
    for k in range(n):
        at = start + timedelta(seconds=span * (k + 0.5) / max(n, 1))
        night = at >= night_from
        truth = rng.choice(LABELS)
        right = rng.random() < (0.63 if night else 0.95)
        label = truth if right else ("dog" if night else rng.choice(LABELS))
        confidence = rng.uniform(0.5, 0.8) if night else rng.uniform(0.75, 0.999)
        other = next(c for c in LABELS if c != label)
        batch.append(LoggedPrediction(
            uuid.uuid4().hex, at, environment, model, 1, label, confidence,
            {label: confidence, other: 1 - confidence}, {"brightness": 40.0 if night else 130.0},
            rng.choice(CAMERAS), rng.uniform(2.5, 9.0), None, None,
        ))  # fmt: skip
        if feedback_every and k % feedback_every == 0:
            truths.append((batch[-1].id, truth))
        if len(batch) == 5000:
            store.add_many(batch)
            batch = []
    store.add_many(batch)
    for prediction_id, truth in truths:
        store.add_feedback(prediction_id, truth, actor="park-keeper")
    return n, len(truths)


def _telemetry(
    ws: Workspace,
    rng: random.Random,
    start: datetime,
    end: datetime,
    window: timedelta,
    night_from: datetime,
) -> int:
    samples = []
    at, step = start, window / 4
    while at < end:
        night = at >= night_from
        for camera in CAMERAS:
            samples.append(Sample(at, camera, "temperature", rng.gauss(14 if night else 24, 0.6)))
            humid = rng.gauss(93 if night and camera == "cam-pond" else 60, 2)
            samples.append(Sample(at, camera, "humidity", humid))
        at += step
    return TelemetryStore(ws.db).add(samples)


def _trials(ws: Workspace, rng: random.Random, n: int) -> int:
    """A tuning study of ``n`` finished trials with three epochs of metrics each."""
    study = f"bench-{uuid.uuid4().hex[:8]}"
    for t in range(n):
        params = {"lr": 10 ** rng.uniform(-4, -2), "weight_decay": 10 ** rng.uniform(-6, -3),
                  "arch": "small_cnn", "image_size": 64, "epochs": 3}  # fmt: skip
        run_id = ws.tracker.start(kind="trial", dataset="park", dataset_version="0" * 64,
                                  params=params, study=study, trial_number=t)  # fmt: skip
        accuracy = 0.5
        for epoch in (1, 2, 3):
            accuracy = min(0.99, accuracy + rng.uniform(0.0, 0.15))
            ws.tracker.log_epoch(run_id, epoch, {"val_accuracy": accuracy,
                                                 "train_loss": 1.0 / epoch})  # fmt: skip
        status = "pruned" if rng.random() < 0.3 else "completed"
        ws.tracker.finish(run_id, status, {"val_accuracy": accuracy})
    return n
