"""Start-up of the command line and of a prediction service (goal: `kennel --help` and
`kennel --version` under 0.5 s; a serving process never loads PyTorch).

    .venv/bin/python benchmarks/startup.py [--runs 5]

Prints JSON: the median wall time of `kennel --help` and `kennel --version` as processes,
the time from starting `kennel serve` to its first ready answer, and whether a torch library
is mapped into the serving process.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from kennel.config import init_project
from kennel.datasets.synth import generate
from kennel.pipeline.build import BuildOptions
from kennel.wiring import Workspace

KENNEL = [sys.executable, "-m", "kennel.cli"]


def timed(args: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([*KENNEL, *args], capture_output=True, check=True)
        times.append(time.perf_counter() - began)
    return round(statistics.median(times), 3)


def serve_startup(root: Path) -> dict[str, object]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    began = time.perf_counter()
    proc = subprocess.Popen(
        [*KENNEL, "serve", "--env", "production", "--port", str(port), "-C", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1):
                    break
            except OSError:
                time.sleep(0.02)
        ready = time.perf_counter() - began
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"serve_ready_s": round(ready, 3), "serve_loads_torch": "torch" in maps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    result: dict[str, object] = {
        "help_s": timed(["--help"], args.runs),
        "version_s": timed(["--version"], args.runs),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "lake", 120, seed=3)
        project, _ = init_project(root / "p")
        config = yaml.safe_load((project.root / "kennel.yaml").read_text())
        config["train"].update(image_size=64, epochs=1, search={"trials": 1})
        config["gates"]["beat_majority"] = False
        (project.root / "kennel.yaml").write_text(yaml.safe_dump(config))
        ws = Workspace.load(project.root)
        try:
            ws.ingestor(workers=1).run(ws.source(str(root / "lake")), "park")
            model = ws.builder().build("park", BuildOptions(trials=1)).model
            ws.registry.set_alias(model.name, "production", model.version, actor="bench",
                                  reason="startup benchmark")  # fmt: skip
        finally:
            ws.close()
        result.update(serve_startup(project.root))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
