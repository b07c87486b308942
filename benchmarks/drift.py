"""Drift analysis over 100,000 prediction records (goal <= 1 s end to end on this machine):
loading the window from the metadata store (SQLite, and PostgreSQL when reachable), and the
analysis itself (integrity, every drift test, measured and estimated performance), timed
separately; the best of ``--repeat`` runs, with the CPU time of this process beside the wall
time (on a shared machine the wall time is mostly waiting for a core) and the load average.

    .venv/bin/python benchmarks/drift.py [--records 100000] [--repeat 3]
        [--pg postgresql+psycopg://127.0.0.1:5432/test | --no-postgres]

``benchmarks/peers.py`` reuses :func:`make_records`, :func:`on_postgres` and :func:`measure`
to time the same window beside Evidently.
"""

from __future__ import annotations

import argparse
import json
import os
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
from kennel.db.predictions import LoggedPrediction, PredictionStore
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
    load_cpu_s: float = 0.0
    analysis_cpu_s: float = 0.0

    def figures(self) -> dict[str, Any]:
        return {
            "load_s": round(self.load_s, 3),
            "analysis_s": round(self.analysis_s, 3),
            "total_s": round(self.load_s + self.analysis_s, 3),
            "load_cpu_s": round(self.load_cpu_s, 3),
            "analysis_cpu_s": round(self.analysis_cpu_s, 3),
            "records": len(self.window),
            "drifted": sorted(t["name"] for t in self.details["drift"]["tests"] if t["drifted"]),
        }


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
    """Through the store's write path, as the prediction log writes them."""
    store = PredictionStore(db)
    for lo in range(0, len(rows), 5000):
        store.add_many([LoggedPrediction(**r) for r in rows[lo : lo + 5000]])


def measure(
    db: Database, reference: dict[str, Any], config: KennelConfig, start: datetime, repeat: int = 1
) -> Measured:
    """Load the window from ``db`` and analyse it, each timed (wall and CPU); the fastest of
    ``repeat`` runs."""
    best: Measured | None = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        window = load(db, environment="production", since=start, until=datetime.now(UTC))
        loaded, loaded_cpu = time.perf_counter() - wall, time.process_time() - cpu
        wall, cpu = time.perf_counter(), time.process_time()
        metrics, details = analyse(window, reference, config)
        m = Measured(window, metrics, details, loaded, time.perf_counter() - wall, loaded_cpu,
                     time.process_time() - cpu)  # fmt: skip
        if best is None or m.load_s + m.analysis_s < best.load_s + best.analysis_s:
            best = m
    assert best is not None
    return best


def on_postgres(base: str, made: Records, repeat: int = 1) -> dict[str, Any]:
    """The same records in a fresh schema of ``base`` (dropped afterwards), loaded and
    analysed; a 'skipped' reason where the server is not reachable."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(base, connect_args={"connect_timeout": 3})
    schema = f"peers_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
    except OperationalError as exc:
        admin.dispose()
        return {"skipped": f"PostgreSQL unreachable at {base}: {exc.__class__.__name__}"}
    try:
        db = Database.open(f"{base}?options=-csearch_path%3D{schema}")
        try:
            insert(db, made.rows)
            return measure(db, made.reference, made.ws.project.config, made.start, repeat).figures()
        finally:
            db.dispose()
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per store; the best counts")
    parser.add_argument("--pg", default="postgresql+psycopg://127.0.0.1:5432/test",
                        help="PostgreSQL URL (a scratch schema is made and dropped)")  # fmt: skip
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        made = make_records(Path(tmp), args.records)
        try:
            insert(made.ws.db, made.rows)
            config = made.ws.project.config
            m = measure(made.ws.db, made.reference, config, made.start, args.repeat)
            pg = {"skipped": "--no-postgres"} if args.no_postgres else on_postgres(
                args.pg, made, args.repeat)  # fmt: skip
        finally:
            made.ws.close()
    print(json.dumps({
        "records": len(m.window),
        "sqlite": m.figures(),
        "postgresql": pg,
        "tests": [t["name"] for t in m.details["drift"]["tests"]],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
