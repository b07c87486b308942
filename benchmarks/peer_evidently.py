"""The Evidently side of ``benchmarks/peers.py``, run inside Evidently's scratch venv (never
in kennel's): DataDriftPreset over the numeric columns of reference vs current.

    python peer_evidently.py COLUMNS.npz  ->  JSON on stdout

The .npz holds ``ref_<column>`` and ``cur_<column>`` arrays. Building the DataFrames and each
Report run are timed separately; the report runs twice (the first pays lazy imports).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def main() -> None:
    # constant columns (every image the same size) make its correlations divide by zero
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    arrays = np.load(sys.argv[1])
    columns = sorted(k[4:] for k in arrays.files if k.startswith("ref_"))
    began = time.perf_counter()
    frames = {
        side: pd.DataFrame({c: arrays[f"{side}_{c}"] for c in columns}) for side in ("ref", "cur")
    }
    definition = DataDefinition(numerical_columns=columns)
    data = {
        side: Dataset.from_pandas(df, data_definition=definition) for side, df in frames.items()
    }
    frames_s = time.perf_counter() - began
    runs: list[float] = []
    result: dict[str, Any] = {}
    for _ in range(2):
        began = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(
            current_data=data["cur"], reference_data=data["ref"]
        )
        result = snapshot.dict()
        runs.append(time.perf_counter() - began)
    count, methods, drifted = None, {}, []
    for metric in result.get("metrics", []):
        name, config = str(metric.get("metric_name", "")), metric.get("config", {})
        if name.startswith("DriftedColumnsCount"):
            count = metric["value"]["count"]
        elif name.startswith("ValueDrift"):
            methods[config["column"]] = config["method"]
            value, threshold = metric["value"], config["threshold"]
            # a p-value drifts below its threshold, a distance at or above it
            if value < threshold if "p_value" in config["method"] else value >= threshold:
                drifted.append(config["column"])
    print(json.dumps({
        "columns": columns,
        "reference_rows": {c: int(frames["ref"][c].notna().sum()) for c in columns},
        "current_rows": len(frames["cur"]),
        "frames_s": round(frames_s, 3),
        "first_report_s": round(runs[0], 3),
        "report_s": round(runs[1], 3),
        "drifted_columns": count,
        "drifted": sorted(drifted),
        "methods": methods,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
