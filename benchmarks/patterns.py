"""The seed's deployment-architecture comparison, measured: the four patterns on one bundle
(a model trained on real photos) and the same 200 test images, in one run.

    .venv/bin/python benchmarks/patterns.py [--project DIR] [--images 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from kennel.bench import run_patterns, test_images
from kennel.wiring import Workspace
from quick_model import quick_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", type=Path)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--db", help="shared DB URL for pattern 4 (default: temp SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.project or quick_model(Path(tmp))
        ws = Workspace.load(root)
        try:
            images = test_images(ws, "production", args.images)
            results = run_patterns(ws, images, concurrency=args.concurrency, db_url=args.db)
        finally:
            ws.close()
    print(json.dumps({"images": len(images), "results": [r.as_dict() for r in results]}, indent=2))


if __name__ == "__main__":
    main()
