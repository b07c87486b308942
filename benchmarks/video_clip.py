"""Frames per second on the real dog clip, end to end (decode + preprocessing + inference +
events), with a model trained on real photos (goal: >= 5x real time on this machine).

    .venv/bin/python benchmarks/video_clip.py [--project DIR]   # DIR: production alias set
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from kennel.video.capture import FrameReader
from kennel.video.watch import Watcher
from kennel.wiring import Workspace
from quick_model import SHARED, quick_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", type=Path)
    parser.add_argument("--clip", type=Path, default=SHARED / "videos" / "dog.mp4")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.project or quick_model(Path(tmp))
        ws = Workspace.load(root)
        try:
            predictor = ws.predictor("pets@production")
            runs = {}
            for label, fps in (("every frame", None), ("sampled 8 fps", 8.0)):
                reader = FrameReader(str(args.clip), target_fps=fps)
                stats = Watcher(reader, lambda: predictor, batch_size=8).run().as_dict()
                runs[label] = {
                    k: stats[k]
                    for k in ("frames_read", "frames_scored", "fps", "realtime_factor", "labels")
                } | {
                    "latency_ms": stats["latency_ms"],
                    "events": [e["text"] for e in stats["events"]],
                }
            result = {
                "clip": str(args.clip),
                "model": f"{predictor.name}@{predictor.version}",
                "accuracy_on_its_test_split": ws.registry.resolve("pets@production").metrics[
                    "accuracy"
                ],
                "runs": runs,
            }
        finally:
            ws.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
