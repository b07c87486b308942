"""The quality figure: train on the real 10k Kaggle set (its own train split) and report test
accuracy, precision and recall on the untouched test split, with the time it took.

    .venv/bin/python benchmarks/train_quality.py [--data ../shared/datasets/dogs-vs-cats-10k.zip]

Default: what ``kennel train --preset best`` does in a fresh project (kennel.yaml as ``kennel
init`` writes it): EfficientNet-Lite2 (ImageNet weights) at 320 px, every layer but the
classifier frozen, each training image's embedding computed once by ONNX Runtime (and each
validation image's mirror image's, to validate as the model predicts), the linear classifier
fitted on them (standardised logistic regression, C by 5-fold cross-validation; kennel.yaml's
search over lr, weight_decay and augment is skipped, as none applies to a probe), each image
averaged with its mirror image in the exported graph. ``--preset quick`` with
``--arch/--size/--frozen/--epochs/--lr/--augment`` gives the earlier fine-tuning recipes
(e.g. Lite0, 192 px, 5 frozen blocks, 5 epochs).
Prints JSON: wall and CPU time, seconds per phase (from the build's progress events) and per
run (the first trial pays for the frozen pass; the final run's time includes evaluation,
export, parity and registration), and the load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from kennel.config import init_project
from kennel.package import bundle
from kennel.pipeline.build import BuildOptions
from kennel.progress import Event, lines
from kennel.wiring import Workspace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/datasets/dogs-vs-cats-10k.zip")
    parser.add_argument("--preset", default="best", choices=["best", "quick"])
    parser.add_argument("--trials", type=int, default=None, help="default: kennel.yaml's")
    parser.add_argument("--arch", default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--frozen", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--augment", type=float, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kennel-quality-"))
    project, _ = init_project(work / "project")
    ws = Workspace(project)
    load = [os.getloadavg()]
    phases: dict[str, list[float]] = {}
    say = lines(lambda m: print(m, flush=True))

    def progress(event: Event) -> None:
        now = time.perf_counter()
        phases.setdefault(event.phase, [now, now])[1] = now
        say(event)

    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        ws.ingestor().run(ws.source(args.data), "pets")
        ingest_s = time.perf_counter() - wall0
        overrides = {
            key: value
            for key, value in (("frozen_blocks", args.frozen), ("lr", args.lr),
                               ("augment", args.augment))
            if value is not None
        }  # fmt: skip
        options = BuildOptions(
            preset=args.preset,
            arch=args.arch,
            epochs=args.epochs,
            trials=args.trials,
            image_size=args.size,
            overrides=overrides,
        )
        result = ws.builder().build("pets", options, progress)
        # the first trial (or the final run, without a search) pays for the frozen pass
        trials = ws.tracker.runs(study=result.study, kind="trial") if result.study else []
        runs = [*trials, ws.tracker.get(result.run_id)]
        run_s = [
            {"kind": r.kind, "status": r.status, "seconds": round(r.duration_s or 0.0, 1),
             "params": {k: r.params.get(k) for k in ("lr", "weight_decay", "augment")}}
            for r in runs
        ]  # fmt: skip
    finally:
        ws.close()
    load.append(os.getloadavg())
    wall = time.perf_counter() - wall0
    children = os.times()
    e = result.evaluation
    params = bundle.params(result.config)
    print(
        json.dumps(
            {
                "benchmark": "train_quality",
                "data": args.data,
                "model": result.model.ref,
                "params": {
                    k: params[k]
                    for k in (
                        "arch",
                        "image_size",
                        "preset",
                        "frozen_blocks",
                        "freeze_backbone",
                        "tta_flip",
                        "epochs",
                        "lr",
                        "augment",
                        "batch_size",
                    )
                },
                "epochs_run": len(result.history),
                "test_images": e.metrics.n,
                "test_accuracy": round(e.accuracy, 4),
                "precision": {c: round(m.precision, 4) for c, m in e.per_class.items()},
                "recall": {c: round(m.recall, 4) for c, m in e.per_class.items()},
                "recall_gap": round(e.bias.recall_gap, 4),
                "ece_after_temperature": round(e.calibration.ece_after, 4),
                "parity_max_logit_diff": result.parity.max_abs_logit_diff,
                "trials": len(result.trials),
                "ingest_s": round(ingest_s, 1),
                "phase_s": {k: round(b - a, 1) for k, (a, b) in phases.items()},
                "runs": run_s,
                "build_s": round(result.seconds, 1),
                "wall_s": round(wall, 1),
                "cpu_s_this_process": round(time.process_time() - cpu0, 1),
                "cpu_s_children": round(children.children_user + children.children_system, 1),
                "cores": os.cpu_count(),
                "load_average_1_5_15": {"start": load[0], "end": load[1]},
            },
            indent=2,
        )
    )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
