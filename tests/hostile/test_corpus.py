"""Issue 11 row 8, the corpus: a few hundred odd and hostile images through every entry point
that decodes untrusted bytes -> only rejections, never a 5xx, a crash or a dead worker."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import uuid
import zipfile
from pathlib import Path

import httpx
import pika
import pytest
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import Project
from kennel.imaging import ImageRejected, decode
from kennel.portable import Model
from kennel.portable.model import MAX_FILE_BYTES
from kennel.stream.rpc import DEFAULT_URL, RpcClient, RpcWorker
from kennel.wiring import Workspace
from tests.conftest import unavailable
from tests.hostile.conftest import ServiceProcess

MB = 1024 * 1024


def test_decode_and_prepare_raise_only_image_rejected(
    hostile_corpus: dict[str, bytes], hostile_project: Project
) -> None:
    ws = Workspace(hostile_project)
    try:
        predictor = ws.predictor("pets@1")
    finally:
        ws.close()
    accepted = rejected = 0
    for name, data in hostile_corpus.items():
        try:
            decode(data, min_side=1)
            accepted += 1
        except ImageRejected as exc:
            assert str(exc), name
            rejected += 1
        with contextlib.suppress(ImageRejected):
            predictor.predict_prepared([predictor.prepare(data)])
    assert accepted > 100 and rejected > 100  # the corpus holds both kinds


def test_http_single_and_batch_answer_every_item_with_json_and_no_5xx(
    hostile_corpus: dict[str, bytes], service_process: ServiceProcess
) -> None:
    before = service_process.rss()
    service_process.reset_peak()
    items = list(hostile_corpus.items())
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=service_process.url, timeout=60) as client:
        for name, data in items:
            answer = client.post(
                "/v1/predict", content=data, headers={"content-type": "application/octet-stream"}
            )
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            body = answer.json()
            assert answer.status_code < 500, (name, body)
            if answer.status_code != 200:
                assert set(body) == {"error", "detail"}, (name, body)
        for start in range(0, len(items), 16):
            group = items[start : start + 16]
            answer = client.post(
                "/v1/predict/batch",
                files=[("files", (name, data, "application/octet-stream")) for name, data in group],
            )
            assert answer.status_code == 200, answer.text[:500]
            results = answer.json()["results"]
            assert [r["index"] for r in results] == list(range(len(group)))
            for (name, _data), result in zip(group, results, strict=True):
                assert "prediction" in result or result["error"] == "invalid_image", (name, result)
    assert statuses.get(200, 0) > 100 and statuses.get(422, 0) > 100, statuses
    growth = service_process.peak_rss() - before
    assert growth < 400 * MB, f"peak RSS grew by {growth / MB:.0f} MB"
    print(f"HTTP corpus: {statuses}; peak RSS growth {growth / MB:.0f} MB")


def test_the_rpc_worker_survives_the_corpus_and_acknowledges_poison(
    hostile_corpus: dict[str, bytes], hostile_project: Project
) -> None:
    try:
        pika.BlockingConnection(pika.URLParameters(DEFAULT_URL)).close()
    except pika.exceptions.AMQPError as exc:
        unavailable(f"RabbitMQ unreachable at 127.0.0.1:5672: {exc.__class__.__name__}")
    ws = Workspace(hostile_project)
    try:
        predictor = ws.predictor("pets@1")
    finally:
        ws.close()
    queue = f"kennel.test.hostile.{uuid.uuid4().hex[:8]}"
    worker = RpcWorker(predictor, url=DEFAULT_URL, queue=queue)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.wait_ready()
    client = RpcClient(DEFAULT_URL, queue)
    try:
        for name, data in hostile_corpus.items():
            answer = client.predict(data, timeout=20)
            assert "label" in answer or answer["error"] == "invalid_image", (name, answer)
        assert thread.is_alive()
    finally:
        worker.stop()
        thread.join(10)
    try:
        # everything was acknowledged: a restarted worker finds no poison waiting for it
        left = client.channel.queue_declare(queue, durable=True, passive=True)
        assert left.method.message_count == 0
    finally:
        client.channel.queue_delete(queue)
        client.close()
    assert worker.handled == len(hostile_corpus)
    assert 100 < worker.rejected < len(hostile_corpus)


def test_batch_scoring_records_every_bad_file_as_an_error_row(
    hostile_corpus: dict[str, bytes], hostile_project: Project, tmp_path: Path
) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    for i, data in enumerate(hostile_corpus.values()):
        (folder / f"item_{i:04d}.png").write_bytes(data)  # a folder source reads image names
    result = CliRunner().invoke(
        app,
        ["batch-score", "--input", str(folder), "--table", "hostile_scores", "--model", "pets@1",
         "--db", f"sqlite:///{tmp_path / 'scores.db'}", "-C", str(hostile_project.root), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output[-2000:]
    report = json.loads(result.stdout)
    assert report["inputs"] == report["inserted"] == len(hostile_corpus)
    assert 100 < report["errors"] < len(hostile_corpus)


def test_the_embedded_wheel_raises_only_image_rejected(
    hostile_corpus: dict[str, bytes], hostile_project: Project, tmp_path: Path
) -> None:
    exported = CliRunner().invoke(
        app, ["export", "package", "pets@1", "--out", str(tmp_path / "dist"), "--json",
              "-C", str(hostile_project.root)],
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    site = tmp_path / "site"
    with zipfile.ZipFile(json.loads(exported.output)["wheel"]) as wheel:
        wheel.extractall(site)  # a pure-Python wheel: unpacking is installing
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i, data in enumerate(hostile_corpus.values()):
        (inputs / f"{i:04d}").write_bytes(data)
    script = (
        "import collections, json, sys\n"
        "from pathlib import Path\n"
        "import kennel_model_pets as m\n"
        "seen = collections.Counter()\n"
        "for path in sorted(Path(sys.argv[1]).iterdir()):\n"
        "    try:\n"
        "        m.predict(path.read_bytes()); seen['ok'] += 1\n"
        "    except m.ImageRejected:\n"
        "        seen['rejected'] += 1\n"
        "    except BaseException as exc:\n"
        "        seen[type(exc).__name__] += 1\n"
        "print(json.dumps(seen))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n" + script,
         str(inputs)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout)
    assert set(seen) == {"ok", "rejected"}, seen
    assert seen["ok"] + seen["rejected"] == len(hostile_corpus)


def test_the_portable_model_rejects_a_format_outside_the_allow_list() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n"
    with pytest.raises(ImageRejected, match="not one of the accepted formats"):
        Model.rgb(eps)


def test_the_portable_model_reads_only_a_bounded_regular_file_from_a_path(
    tmp_path: Path,
) -> None:
    """The embedded wheel read any path whole: /dev/zero until the process was killed for
    memory; a missing path, a folder or a number raised errors its docstring ruled out."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it must not wait for a writer
    big = tmp_path / "big.jpg"
    with open(big, "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    for path, said in (
        ("/dev/zero", "is not a regular file"),
        (fifo, "is not a regular file"),
        (tmp_path, "is not a regular file"),
        (big, f"is {MAX_FILE_BYTES + 1:,} bytes, over"),
        (tmp_path / "missing.jpg", "cannot read"),
    ):
        with pytest.raises(ImageRejected, match=said):
            Model.rgb(path)  # type: ignore[arg-type]
    with pytest.raises(ImageRejected, match="not int"):
        Model.rgb(123)  # type: ignore[arg-type]
