"""Ingest and version N simulator images, then append 1,000 more (issue: foundation benchmark).

    .venv/bin/python benchmarks/ingest_scale.py --count 100000 [--dvc /path/to/dvc]

Prints JSON: synthesis rate, first-ingest images/s, append re-version time and its ratio to the
first ingest, and (when a dvc executable is given or on PATH) `dvc add` on the same folder. The
append is measured as a user makes one, for both tools: the new files are linked into the
folder and the whole folder is ingested (and `dvc add`-ed) again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from kennel.config import init_project
from kennel.datasets.synth import generate
from kennel.wiring import Workspace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--append", type=int, default=1_000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--dvc", default=shutil.which("dvc"))
    parser.add_argument("--source", help="ingest this source instead of simulator images")
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kennel-bench-"))
    if args.source:
        print(json.dumps(_ingest_source(args.source, work), indent=2))
        return
    lake, extra = work / "lake", work / "append"

    began = time.perf_counter()
    generate(lake, args.count, seed=1, size=args.size, workers=workers)
    synth_s = time.perf_counter() - began
    generate(extra, args.append, seed=2, size=args.size, workers=workers)

    project, _ = init_project(work / "project")
    ws = Workspace(project)
    try:
        first = ws.ingestor().run(ws.source(str(lake)), "bench")
        dvc_s = _dvc_add(args.dvc, work, lake, init=True) if args.dvc else None
        for path in extra.rglob("*.jpg"):  # the new files join the folder, for both tools
            os.link(path, lake / path.relative_to(extra))
        began = time.perf_counter()
        child = ws.ingestor().run(ws.source(str(lake)), "bench")
        append_s = time.perf_counter() - began
        dvc_append_s = _dvc_add(args.dvc, work, lake) if args.dvc else None
    finally:
        ws.close()

    result: dict[str, object] = {
        "benchmark": "ingest_scale",
        "machine": f"{platform.machine()} {workers} cores",
        "images": args.count,
        "image_size": args.size,
        "synth_images_per_s": round(args.count / synth_s, 1),
        "ingest_s": round(first.seconds, 2),
        "ingest_images_per_s": round(first.images_per_second, 1),
        "append_images": args.append,
        "append_reversion_s": round(append_s, 2),
        "append_ratio_of_first": round(append_s / first.seconds, 4),
        "append_read": child.processed,
        "append_reused": child.reused,
        "versions": [first.version.ref, child.version.ref],
        "near_duplicate_pairs": first.near_duplicate_pairs,
    }
    if dvc_s is not None and dvc_append_s is not None:
        result["dvc_add_s"] = round(dvc_s, 2)
        result["dvc_add_over_kennel"] = round(dvc_s / first.seconds, 2)
        result["dvc_append_s"] = round(dvc_append_s, 2)
        result["dvc_append_ratio_of_first"] = round(dvc_append_s / dvc_s, 4)
    print(json.dumps(result, indent=2))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


def _dvc_add(dvc: str, work: Path, lake: Path, *, init: bool = False) -> float:
    """Seconds ``dvc add`` takes over ``lake`` (after ``dvc init`` in ``work`` when ``init``)."""
    if init:
        subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=work, check=True)
    began = time.perf_counter()
    subprocess.run([dvc, "add", "-q", str(lake)], cwd=work, check=True)
    return time.perf_counter() - began


def _ingest_source(source: str, work: Path) -> dict[str, object]:
    project, _ = init_project(work / "project-source")
    ws = Workspace(project)
    try:
        report = ws.ingestor().run(ws.source(source), "real")
    finally:
        ws.close()
    return {
        "benchmark": "ingest_source",
        "source": source,
        "images": report.files,
        "ingest_s": round(report.seconds, 2),
        "ingest_images_per_s": round(report.images_per_second, 1),
        "counts": report.version.counts,
        "quarantined": report.quarantined,
        "exact_duplicate_groups": report.exact_duplicate_groups,
    }


if __name__ == "__main__":
    main()
