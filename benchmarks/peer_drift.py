"""Drift, side by side: kennel's monitoring window (``benchmarks/drift.py`` makes it) loaded and
analysed end to end on SQLite and on PostgreSQL, against Evidently's DataDriftPreset over the
same numeric columns (the image statistics and the confidence) of reference vs current.

Kennel's analysis does more than Evidently is asked to here: integrity checks, the class-ratio
and embedding drift tests, measured and estimated performance. The reference is the one the
bundle carries (samples of the training images' statistics and the held-out confidences);
Evidently gets the same samples as its reference DataFrame.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from drift import Measured, Records, insert, make_records, measure, on_postgres
from kennel.evaluate.drift import IMAGE_STATS
from peer_envs import EVIDENTLY, peer_env


def _columns(made: Records, m: Measured, path: Path) -> None:
    """Reference and current numeric columns for Evidently, as one .npz."""
    ref = {k: np.asarray(made.reference["sample"][k], dtype=np.float64) for k in IMAGE_STATS}
    ref["confidence"] = np.asarray(made.reference["confidence_sample"], dtype=np.float64)
    rows = max(len(v) for v in ref.values())  # one DataFrame: a shorter sample ends in NaN,
    cur = {k: np.asarray(m.window.image_stats[k], dtype=np.float64) for k in IMAGE_STATS}
    cur["confidence"] = np.asarray(m.window.confidence, dtype=np.float64)  # which it drops
    arrays = {f"ref_{k}": np.pad(v, (0, rows - len(v)), constant_values=np.nan)
              for k, v in ref.items()}  # fmt: skip
    arrays.update({f"cur_{k}": v for k, v in cur.items()})
    np.savez(path, **arrays)  # type: ignore[arg-type]


def drift(
    work: Path, *, records: int, pg_url: str | None, say: Callable[[str], None]
) -> dict[str, Any]:
    env = peer_env("evidently")
    shutil.rmtree(work, ignore_errors=True)  # a kept --workdir starts this part afresh
    say(f"drift: training a small model and logging {records:,} predictions")
    made = make_records(work, records)
    try:
        insert(made.ws.db, made.rows)
        say("drift: kennel on SQLite")
        on_sqlite = measure(made.ws.db, made.reference, made.ws.project.config, made.start)
        say("drift: kennel on PostgreSQL" if pg_url else "drift: PostgreSQL not asked for")
        on_pg = on_postgres(pg_url, made) if pg_url else {"skipped": "--no-postgres"}
        _columns(made, on_sqlite, work / "columns.npz")
    finally:
        made.ws.close()
    say(f"drift: Evidently {EVIDENTLY} DataDriftPreset")
    script = Path(__file__).with_name("peer_evidently.py")
    done = subprocess.run(
        [str(env / "bin" / "python"), str(script), str(work / "columns.npz")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    evidently = json.loads(done.stdout.strip().splitlines()[-1])
    sqlite = on_sqlite.figures()
    out: dict[str, Any] = {
        "records": records,
        "evidently": EVIDENTLY,
        "kennel_sqlite": sqlite,
        "kennel_postgresql": on_pg,
        "evidently_report": evidently,
        # > 1: kennel is faster. Evidently's second (warm) report run against kennel's
        # analysis alone, and against kennel's load + analysis end to end.
        "evidently_over_kennel_analysis": round(evidently["report_s"] / sqlite["analysis_s"], 2),
        "evidently_over_kennel_sqlite_total": round(evidently["report_s"] / sqlite["total_s"], 2),
    }
    if "total_s" in on_pg:
        out["evidently_over_kennel_postgresql_total"] = round(
            evidently["report_s"] / on_pg["total_s"], 2
        )
    return out
