"""Drift analysis over 100,000 prediction records (goal <= 1 s on this machine): loading the
window from the metadata store, and the analysis itself (integrity, every drift test,
measured and estimated performance), timed separately.

    .venv/bin/python benchmarks/drift.py [--records 100000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from kennel.config import init_project
from kennel.datasets.synth import generate, render
from kennel.db.schema import PredictionRow
from kennel.monitor.runner import analyse
from kennel.monitor.window import load
from kennel.pipeline.build import BuildOptions
from kennel.serve.predlog import row_of
from kennel.wiring import Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
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
        for k in range(args.records):
            p = base[k % len(base)]
            row = row_of(p, environment="production", source="cam-01", input_sha256=None,
                         at=start + timedelta(milliseconds=k))  # fmt: skip
            row["id"] = uuid.uuid4().hex
            rows.append(row)
        with ws.db.session() as s:
            for lo in range(0, len(rows), 5000):
                s.execute(PredictionRow.__table__.insert(), rows[lo : lo + 5000])
        reference = ws.monitor().reference("pets", 1)
        began = time.perf_counter()
        window = load(ws.db, environment="production", since=start, until=datetime.now(UTC))
        loaded = time.perf_counter() - began
        began = time.perf_counter()
        metrics, details = analyse(window, reference, ws.project.config)
        analysed = time.perf_counter() - began
        ws.close()
    print(json.dumps({
        "records": len(window),
        "load_from_sqlite_s": round(loaded, 3),
        "analysis_s": round(analysed, 3),
        "drifted": bool(metrics.get("drift.drifted")),
        "tests": [t["name"] for t in details["drift"]["tests"]],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
