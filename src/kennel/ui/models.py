"""What the Models pages show: a version's evaluation as its bundle's report.json recorded it
(confusion matrix, ROC and precision-recall curves, slices, bias, gates, worst mistakes), its
calibration drawn from the test predictions its run stored, the model card, its lineage, and
its files as one zip streamed from hash-verified reads."""

from __future__ import annotations

import io
import itertools
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from kennel.errors import KennelError
from kennel.pipeline.lineage import model_lineage
from kennel.registry.entities import ModelVersion
from kennel.wiring import Workspace

REPORT_JSON, CARD = "report.json", "MODEL_CARD.md"  # kennel.package.bundle's names (it loads torch)
BINS = 15  # as kennel.evaluate.metrics.expected_calibration_error bins confidence
SOURCE_FILES = 20
CHUNK = 1 << 20


@dataclass(frozen=True)
class Bin:
    lo: float
    hi: float
    n: int
    confidence: float  # mean of the bin
    accuracy: float


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[Bin]:
    """Confidence against accuracy in equal-width bins of (lo, hi], the empty ones left out
    (the bins whose weighted gaps add up to the expected calibration error)."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            mean, hits = float(confidence[mask].mean()), float(correct[mask].mean())
            out.append(Bin(float(lo), float(hi), int(mask.sum()), mean, hits))
    return out


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class Calibration:
    temperature: float
    before: list[Bin]  # raw probabilities
    after: list[Bin]  # temperature-scaled, as served


class Calibrations:
    """Reliability bins from a run's stored test predictions (uri, sha256, label, one
    ``logit_<class>`` column per class), kept per predictions file."""

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self._kept: OrderedDict[tuple[str, float], Calibration] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, ws: Workspace, digest: str, temperature: float) -> Calibration:
        key = (digest, temperature)
        with self._lock:
            if key in self._kept:
                return self._kept[key]
        table = pq.read_table(io.BytesIO(ws.content.get(digest)))  # hash-verified
        classes = [c.removeprefix("logit_") for c in table.column_names if c.startswith("logit_")]
        logits = np.stack([table[f"logit_{c}"].to_numpy() for c in classes], axis=1)
        position = {c: i for i, c in enumerate(classes)}
        labels = np.array([position.get(v, -1) for v in table["label"].to_pylist()])
        made = Calibration(temperature, reliability(_softmax(logits, 1.0), labels),
                           reliability(_softmax(logits, temperature), labels))  # fmt: skip
        with self._lock:
            self._kept[key] = made
            while len(self._kept) > self.keep:
                self._kept.popitem(last=False)
        return made


def curves(report: dict[str, Any], prefix: str = "") -> dict[str, dict[str, list[Any]]]:
    """The ROC (fpr, tpr) and precision-recall (recall, precision) points per class."""
    out: dict[str, dict[str, list[Any]]] = {"roc": {}, "pr": {}}
    for name, c in report.get("curves", {}).items():
        roc, pr = c.get("roc", {}), c.get("pr", {})
        out["roc"][prefix + name] = list(zip(roc.get("fpr", []), roc.get("tpr", []), strict=True))
        out["pr"][prefix + name] = list(
            zip(pr.get("recall", []), pr.get("precision", []), strict=True)
        )
    return out


@dataclass(frozen=True)
class ModelView:
    model: ModelVersion
    report: dict[str, Any]  # report.json ({} when the bundle has none)
    curves: dict[str, dict[str, list[Any]]]
    calibration: Calibration | None
    card: str
    lineage: dict[str, Any]
    lineage_problem: str
    params: dict[str, Any]  # the training run's parameters

    @property
    def reliability(self) -> dict[str, list[tuple[float, float | None]]]:
        """Accuracy against mean confidence per bin, raw and temperature-scaled."""
        if self.calibration is None:
            return {}
        c = self.calibration
        return {
            "raw": [(b.confidence, b.accuracy) for b in c.before],
            "temperature-scaled": [(b.confidence, b.accuracy) for b in c.after],
            "perfectly calibrated": [(0.0, 0.0), (1.0, 1.0)],
        }


def model_view(ws: Workspace, model: ModelVersion, calibrations: Calibrations) -> ModelView:
    report = ws.registry.read_json(model, REPORT_JSON) if REPORT_JSON in model.files else {}
    card = (
        ws.registry.read_file(model, CARD).decode("utf-8", "replace") if CARD in model.files else ""
    )
    lineage: dict[str, Any] = {}
    problem = ""
    try:
        lineage = model_lineage(model.ref, registry=ws.registry, tracker=ws.tracker,
                                catalog=ws.catalog, files_limit=SOURCE_FILES)  # fmt: skip
    except KennelError as exc:  # a run or dataset version it names is gone: say so
        problem = str(exc)
    run = lineage.get("run", {})
    digest = run.get("metrics", {}).get("predictions_sha256")
    temperature = report.get("calibration", {}).get("temperature")
    calibration = None
    if isinstance(digest, str) and isinstance(temperature, int | float) and temperature > 0:
        try:
            calibration = calibrations.of(ws, digest, float(temperature))
        except KennelError:  # the stored predictions are gone: the numbers still show
            calibration = None
    return ModelView(model, report, curves(report), calibration, card, lineage, problem,
                     dict(run.get("params", {})))  # fmt: skip


def bundle_zip(ws: Workspace, model: ModelVersion) -> Iterator[bytes]:
    """The bundle's files as a zip under ``NAME-VERSION/``, streamed. Every file is read and
    verified against its sha256 before the first byte is sent, and again as it is written: a
    tampered blob is an error page, never a zip with a wrong file in it."""
    names = sorted(model.files)
    for name in names:
        ws.registry.read_file(model, name)  # raises IntegrityError on a bad blob
    return _stream(ws, model, names)


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream: zipfile then writes data descriptors, and whatever
    it wrote so far can be handed on."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def _stream(ws: Workspace, model: ModelVersion, names: list[str]) -> Iterator[bytes]:
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name in names:
            data = ws.registry.read_file(model, name)  # hash-verified again
            with zf.open(f"{model.name}-{model.version}/{name}", "w") as entry:
                for at in range(0, len(data), CHUNK):
                    entry.write(data[at : at + CHUNK])
                    yield sink.drain()
    yield sink.drain()
