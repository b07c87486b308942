"""Drift analysis over 100,000 prediction records (goal <= 1 s on this machine): loading the
window from the metadata store, and the analysis itself (integrity, every drift test,
measured and estimated performance), timed separately.

    .venv/bin/python benchmarks/drift.py [--records 100000]

``benchmarks/peers.py`` reuses :func:`make_records` and :func:`measure` to time the same
window on PostgreSQL and beside Evidently.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from kennel.config import KennelConfig, init_project
from kennel.datasets.synth import generate, render
from kennel.db import Database
from kennel.db.schema import PredictionRow
from kennel.monitor.runner import analyse
from kennel.monitor.window import Window, load
from kennel.pipeline.build import BuildOptions
from kennel.serve.predlog import row_of
from kennel.wiring import Workspace


@dataclass
class Records:
    """A window's worth of logged predictions of a small model, and what it compares against."""

    ws: Workspace
    rows: list[dict[str, Any]]
    reference: dict[str, Any]
    start: datetime


@dataclass
class Measured:
    window: Window
    metrics: dict[str, float]
    details: dict[str, Any]
    load_s: float
    analysis_s: float


def make_records(root: Path, records: int) -> Records:
    """Train a small model on simulator images, then log ``records`` predictions of night
    images (a drifted window) at one per millisecond over the last ``records`` ms."""
    generate(root / "lake", 300, seed=3)
    project, _ = init_project(root / "p")
    config = yaml.safe_load((project.root / "kennel.yaml").read_text())
    config["train"].update(image_size=64, epochs=2, search={"trials": 1})
    (project.root / "kennel.yaml").write_text(yaml.safe_dump(config))
    ws = Workspace.load(project.root)
    ws.ingestor().run(ws.source(str(root / "lake")), "park")
    ws.builder().build("park", BuildOptions(trials=1))
    predictor = ws.predictor("pets@1")
    base = predictor.predict([render(i, seed=9, scenario="night")[1] for i in range(500)])
    start = datetime.now(UTC) - timedelta(hours=1)
    rows = []
    for k in range(records):
        p = base[k % len(base)]
        row = row_of(p, environment="production", source="cam-01", input_sha256=None,
                     at=start + timedelta(milliseconds=k))  # fmt: skip
        row["id"] = uuid.uuid4().hex
        rows.append(row)
    return Records(ws, rows, ws.monitor().reference("pets", 1), start)


def insert(db: Database, rows: list[dict[str, Any]]) -> None:
    with db.session() as s:
        for lo in range(0, len(rows), 5000):
            s.execute(PredictionRow.__table__.insert(), rows[lo : lo + 5000])


def measure(
    db: Database, reference: dict[str, Any], config: KennelConfig, start: datetime
) -> Measured:
    """Load the window from ``db`` and analyse it, each timed."""
    began = time.perf_counter()
    window = load(db, environment="production", since=start, until=datetime.now(UTC))
    loaded = time.perf_counter() - began
    began = time.perf_counter()
    metrics, details = analyse(window, reference, config)
    return Measured(window, metrics, details, loaded, time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        made = make_records(Path(tmp), args.records)
        try:
            insert(made.ws.db, made.rows)
            m = measure(made.ws.db, made.reference, made.ws.project.config, made.start)
        finally:
            made.ws.close()
    print(json.dumps({
        "records": len(m.window),
        "load_from_sqlite_s": round(m.load_s, 3),
        "analysis_s": round(m.analysis_s, 3),
        "drifted": bool(m.metrics.get("drift.drifted")),
        "tests": [t["name"] for t in m.details["drift"]["tests"]],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
