"""The quality figure: train on the real 10k Kaggle set (its own train split) and report test
accuracy, precision and recall on the untouched test split, with the time it took.

    .venv/bin/python benchmarks/train_quality.py [--data ../shared/datasets/dogs-vs-cats-10k.zip]

Defaults: EfficientNet-Lite0 (ImageNet weights) at 192 px (the photos are 200 px), stem and
first 5 blocks frozen and their features cached (plus a mirrored view), the other 11 blocks and
the head fine-tuned for 5 epochs.
Prints JSON; wall time and process CPU time are both reported.
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
from kennel.progress import lines
from kennel.wiring import Workspace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/datasets/dogs-vs-cats-10k.zip")
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--frozen", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--augment", type=float, default=0.5)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kennel-quality-"))
    project, _ = init_project(work / "project")
    ws = Workspace(project)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        ws.ingestor().run(ws.source(args.data), "pets")
        ingest_s = time.perf_counter() - wall0
        options = BuildOptions(
            arch=args.arch,
            epochs=args.epochs,
            trials=1,
            image_size=args.size,
            overrides={
                "frozen_blocks": args.frozen,
                "lr": args.lr,
                "augment": args.augment,
                "patience": 3,
            },
        )
        result = ws.builder().build("pets", options, lines(lambda m: print(m, flush=True)))
    finally:
        ws.close()
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
                        "frozen_blocks",
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
                "ingest_s": round(ingest_s, 1),
                "build_s": round(result.seconds, 1),
                "wall_s": round(wall, 1),
                "cpu_s_this_process": round(time.process_time() - cpu0, 1),
                "cpu_s_children": round(children.children_user + children.children_system, 1),
                "cores": os.cpu_count(),
            },
            indent=2,
        )
    )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
