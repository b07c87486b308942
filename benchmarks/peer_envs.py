"""Scratch virtualenvs for the tools kennel is measured against (MLflow, DVC, Evidently).

They are not kennel's dependencies: each lives in its own venv under ``~/.cache/kennel-peers``
(or ``$KENNEL_PEERS_CACHE``), created on first use with ``python -m venv`` and pinned
versions, and reused while its ``.ready`` marker lists the same pins.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

MLFLOW = "3.17.2"
DVC = "3.67.1"
EVIDENTLY = "0.7.23"
PANDAS = "2.3.3"  # for Evidently


def cache() -> Path:
    return Path(os.environ.get("KENNEL_PEERS_CACHE", Path.home() / ".cache" / "kennel-peers"))


def pins(tool: str) -> tuple[str, list[str]]:
    """The venv's folder name and the requirements installed into it. MLflow's venv gets the
    same ONNX Runtime and Pillow as kennel's, so the two services run the same code."""
    if tool == "mlflow":
        ort, pil = version("onnxruntime"), version("pillow")
        return f"mlflow-{MLFLOW}-ort{ort}", [
            f"mlflow=={MLFLOW}",
            f"onnxruntime=={ort}",
            f"pillow=={pil}",
        ]
    if tool == "dvc":
        return f"dvc-{DVC}", [f"dvc=={DVC}"]
    if tool == "evidently":
        # Evidently 0.7 imports a pandas internal that pandas 3 removed
        return f"evidently-{EVIDENTLY}", [f"evidently=={EVIDENTLY}", f"pandas=={PANDAS}"]
    raise ValueError(f"unknown peer {tool!r} (choose mlflow, dvc or evidently)")


def peer_env(tool: str) -> Path:
    """The venv folder for ``tool``, created (minutes, once) when missing or incomplete."""
    name, requirements = pins(tool)
    root = cache() / name
    marker = root / ".ready"
    wanted = "\n".join(requirements) + "\n"
    if marker.is_file() and marker.read_text() == wanted:
        return root
    if root.exists():
        shutil.rmtree(root)  # a half-made venv from an interrupted run
    print(f"peers: creating {root} ({' '.join(requirements)})", file=sys.stderr)
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "-q", *requirements], check=True
    )
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(wanted)
    tmp.replace(marker)  # written last: a venv without it is rebuilt
    return root
