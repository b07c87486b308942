"""The training image cache under ``kill -9``: the decoding workers die with the build that
started them, and the half-filled folder it left is removed by the next build (both used to
outlive it: two spawned workers of ~90 MB each, and a cache file of the set's full size)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from PIL import Image

from kennel.datasets.manifest import Row
from kennel.fsutil import try_lock
from kennel.storage import open_content_store
from kennel.train.data import build_image_set

BUILD = """
import sys, time
from pathlib import Path
from kennel.datasets.manifest import Row
from kennel.storage import open_content_store
from kennel.train.data import build_image_set

url, cache, digest = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
rows = [Row(f"f{i}.jpg", digest, "cat", "train", 32, 32, 0.0, 0.0, 0.0, "0", "{}")
        for i in range(1200)]

def stall(done, total):
    print("filling", flush=True)
    time.sleep(600)

build_image_set(rows, ["cat", "dog"], version_id="a" * 24, size=16,
                content=open_content_store(url), artifacts_url=url, cache_root=cache,
                workers=2, progress=stall)
"""


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), "brown").save(out, "JPEG")
    return out.getvalue()


def _rows(digest: str, n: int) -> list[Row]:
    return [Row(f"f{i}.jpg", digest, "cat", "train", 32, 32, 0.0, 0.0, 0.0, "0", "{}")
            for i in range(n)]  # fmt: skip


def test_a_killed_build_leaves_no_workers_and_its_folder_is_swept(tmp_path: Path) -> None:
    url = (tmp_path / "artifacts").as_uri()
    store = open_content_store(url)
    digest = store.put(_jpeg())
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-c", BUILD, url, str(cache), digest],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the killed build's resource tracker notes its semaphores
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "filling\n"
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers, "the build started no worker"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers
        ):
            time.sleep(0.1)
        left = [w.pid for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
        assert left == [], f"workers outlived the killed build: {left}"
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    [left_behind] = list(cache.glob(".tmp-*"))
    # a live build's folder (locked by its process) is left alone
    live = cache / ".tmp-live"
    live.mkdir()
    held = try_lock(live / "owner.lock")
    try:
        images = build_image_set(_rows(digest, 5), ["cat", "dog"], version_id="b" * 24, size=16,
                                 content=store, artifacts_url=url, cache_root=cache)  # fmt: skip
        assert images.images.shape == (5, 16, 16, 3)
        assert not left_behind.exists() and live.is_dir()
        assert sorted(p.name for p in cache.iterdir()) == [".tmp-live", f"{'b' * 24}-16"]
    finally:
        assert held is not None
        os.close(held)
