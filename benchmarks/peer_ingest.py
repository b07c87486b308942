"""Ingest, side by side: ``kennel data ingest`` against ``dvc add`` (in a git + DVC repo) of
the same N image files, then a 1 % append re-versioned by both: the new files are added to the
folder and each tool is run on the whole folder again. Both run as CLI processes, timed
wall-clock from start to exit. kennel's append is also timed as its users add a batch: the
new files' folder ingested into the dataset as a source of its own (on a copy of the project
made after the first ingest), which needs no look at the files already versioned.

The N files are the 10k real photos repeated: file j is photo j mod 10,000 with a JPEG comment
segment naming j inserted after the start marker, so every file has distinct bytes (no tool
can deduplicate them) while decoding to the photo's pixels, at the photo's size and cost.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from kennel.config import init_project
from peer_envs import DVC, peer_env
from quick_model import SHARED

QUIET = {"DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATER": "1"}
GIT_ID = ["-c", "user.name=peers", "-c", "user.email=peers@localhost"]
_photos: list[tuple[str, bytes]] = []


def _load_photos() -> None:
    with zipfile.ZipFile(SHARED / "dogs-vs-cats-10k.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        _photos.extend((Path(n).name.split(".")[0], archive.read(n)) for n in names)


def tagged(data: bytes, j: int) -> bytes:
    """``data`` (a JPEG) with a comment segment naming ``j`` right after SOI."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    text = f"kennel-peers {j}".encode()
    return data[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + data[2:]


def _write(out: str, lo: int, hi: int) -> None:
    if not _photos:
        _load_photos()
    for j in range(lo, hi):
        label, data = _photos[j % len(_photos)]
        (Path(out) / label / f"{j:07d}.jpg").write_bytes(tagged(data, j))


def make_files(out: Path, first: int, count: int) -> None:
    """Files ``first`` .. ``first + count - 1`` as ``out/{cat,dog}/NNNNNNN.jpg``."""
    for label in ("cat", "dog"):
        (out / label).mkdir(parents=True, exist_ok=True)
    step = 2000
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        jobs = [
            pool.submit(_write, str(out), lo, min(lo + step, first + count))
            for lo in range(first, first + count, step)
        ]
        for job in jobs:
            job.result()


def _link_blob(source: str, target: str) -> None:
    """Copy a project file, linking the content store's blobs (written once, never changed)
    and copying everything else (the metadata DB above all)."""
    if f"{os.sep}sha256{os.sep}" in source:
        os.link(source, target)
    else:
        shutil.copy2(source, target)


def _timed(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, float, str]:
    """The command's seconds, then those of a file system sync right after it, and its output.
    Each tool starts with no one else's writes waiting in the page cache: a file system sync
    (kennel's, before it records what it stored) would otherwise flush the other tool's
    gigabyte too, and which tool ran just before would decide a part of the time. The sync
    after it is what the tool left unwritten: kennel syncs what it stored before recording
    it, `dvc add` leaves its cache's copies to the kernel (not part of its own time)."""
    os.sync()
    began = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {done.stderr.strip()[-500:]}")
    began = time.perf_counter()
    os.sync()
    return seconds, time.perf_counter() - began, done.stdout


def ingest(work: Path, *, images: int, say: Callable[[str], None]) -> dict[str, Any]:
    dvc = str(peer_env("dvc") / "bin" / "dvc")
    shutil.rmtree(work, ignore_errors=True)  # a kept --workdir starts this part afresh
    append = max(1, images // 100)
    repo = work / "repo"  # the git + DVC repository; the files live in it for both tools
    lake, extra = repo / "images", work / "append"
    say(f"ingest: writing {images:,} + {append:,} distinct JPEGs (the 10k photos, tagged)")
    make_files(lake, 0, images)
    make_files(extra, images, append)
    env = {**os.environ, **QUIET}
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([dvc, "init", "-q"], cwd=repo, check=True, env=env)
    subprocess.run(["git", *GIT_ID, "commit", "-qm", "dvc init"], cwd=repo, check=True)

    project, _ = init_project(work / "kennel")

    def kennel(source: Path) -> list[str]:
        return [sys.executable, "-m", "kennel.cli", "data", "ingest", str(source),
                "--dataset", "bench", "--layout", "imagefolder", "-C", str(project.root),
                "--json"]  # fmt: skip

    say("ingest: kennel data ingest")
    k_first, k_first_sync, out = _timed(kennel(lake), work)
    first = json.loads(out)
    # the same project as it stands now, for the append as kennel's own workflow below
    twin = work / "kennel-twin"
    shutil.copytree(project.root, twin, copy_function=_link_blob)
    say("ingest: dvc add")
    d_first, d_first_sync, _ = _timed([dvc, "add", "-q", "images"], repo, env)
    subprocess.run(["git", "add", "images.dvc", ".gitignore"], cwd=repo, check=True)
    subprocess.run(["git", *GIT_ID, "commit", "-qm", "v1"], cwd=repo, check=True)

    say(f"ingest: append {append:,} and re-version")
    for path in extra.rglob("*.jpg"):  # the new files join the folder, for both tools
        os.link(path, lake / path.parent.name / path.name)
    k_append, k_append_sync, out = _timed(kennel(lake), work)  # all again, as dvc add does
    second = json.loads(out)
    d_append, d_append_sync, _ = _timed([dvc, "add", "-q", "images"], repo, env)
    # kennel's own way to add a batch: ingest the new files' folder into the dataset (its new
    # version holds the parent's files and these); on the twin made after the first ingest
    say(f"ingest: append {append:,} as a source of their own")
    source_cmd = kennel(extra)
    source_cmd[source_cmd.index(str(project.root))] = str(twin)
    k_source, _sync, out = _timed(source_cmd, work)
    third = json.loads(out)
    return {
        "images": images,
        "append": append,
        "dvc": DVC,
        "kennel": {
            "first_s": round(k_first, 2),
            "append_s": round(k_append, 2),
            "images_per_s": round(images / k_first, 1),
            "append_over_first": round(k_append / k_first, 4),
            "sync_after_s": [round(k_first_sync, 2), round(k_append_sync, 2)],
            # the run as the ingest itself reports it, without process start and imports
            "reported_s": [round(first["seconds"], 2), round(second["seconds"], 2)],
            "versions": [first["version"]["ref"], second["version"]["ref"]],
            "rows": [first["version"]["rows"], second["version"]["rows"]],
            # the append's files read and checked, and those unchanged since the first read
            "append_read": second["processed"],
            "append_reused": second.get("reused", 0),
            # the new files ingested as a source of their own into the same dataset
            "append_source_s": round(k_source, 2),
            "append_source_over_first": round(k_source / k_first, 4),
            "append_source_rows": third["version"]["rows"],
            "append_source_reported_s": round(third["seconds"], 2),
        },
        "dvc_add": {
            "first_s": round(d_first, 2),
            "append_s": round(d_append, 2),
            "images_per_s": round(images / d_first, 1),
            "append_over_first": round(d_append / d_first, 4),
            "sync_after_s": [round(d_first_sync, 2), round(d_append_sync, 2)],
        },
        # > 1: kennel is faster
        "speed_kennel_over_dvc": round(d_first / k_first, 2),
        "append_speed_kennel_over_dvc": round(d_append / k_append, 2),
        # each tool's time with the sync after it: until what it wrote is on disk
        "speed_kennel_over_dvc_synced": round(
            (d_first + d_first_sync) / (k_first + k_first_sync), 2
        ),
    }
