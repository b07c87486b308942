"""Helpers for serving tests: free ports, a project with two tiny registered models."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from onnx import TensorProto, helper

from kennel.config import Project
from kennel.datasets.synth import generate
from kennel.pipeline.build import BuildOptions
from kennel.serve.runtime import METADATA, MODEL
from kennel.serve.server import RunningServer, start_in_thread
from kennel.wiring import Workspace
from tests.conftest import TINY_TRAIN, make_project


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def served_project(
    root: Path,
    *,
    mode: str = "delivery",
    metadata_url: str | None = None,
    artifacts_url: str | None = None,
    poll_s: float = 0.2,
    models: int = 2,
    serve: dict[str, object] | None = None,
    gates: dict[str, object] | None = None,
) -> Project:
    """A project with ``models`` tiny registered versions of ``pets`` trained on 120
    simulator images, and staging/production on free loopback ports."""
    lake = root / "lake"
    if not lake.exists():
        generate(lake, 120, seed=3)
    sections: dict[str, dict[str, object]] = {
        "train": {**TINY_TRAIN, "epochs": 1},
        "serve": {"poll_s": poll_s, "max_wait_ms": 2.0, **(serve or {})},
        "environments": {
            "staging": {"host": "127.0.0.1", "port": free_port(), "alias": "staging"},
            "production": {"host": "127.0.0.1", "port": free_port(), "alias": "production"},
        },
        "release": {"mode": mode, "certification": {"max_p99_ms": 10000.0}},
        # these one-epoch models exist to be served, not to be good: only a test that asks
        # for gates gets them (the policy refuses to deploy a gate-failed model)
        "gates": gates or {"beat_majority": False},
    }
    if metadata_url:
        sections["store"] = {"metadata_url": metadata_url}
    if artifacts_url:
        sections.setdefault("store", {})["artifacts_url"] = artifacts_url
    project = make_project(root / "p", sections=sections, workers=1)
    ws = Workspace(project)
    try:
        ws.ingestor().run(ws.source(str(lake)), "park")
        for i in range(models):
            ws.builder().build("park", BuildOptions(trials=1, overrides={"seed": i}))
    finally:
        ws.close()
    return project


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@contextmanager
def serving_production(project: Project) -> Iterator[tuple[RunningServer, Workspace]]:
    """pets@1 set as production by hand and served in this process on a free port."""
    ws = Workspace(project)
    ws.registry.set_alias("pets", "production", 1, actor="test", reason="start")
    running = start_in_thread(ws.service("production"))
    try:
        yield running, ws
    finally:
        running.stop()
        ws.close()


def start_env(ws: Workspace, env: str) -> RunningServer:
    """The environment's service in this process, on the port kennel.yaml gives it."""
    return start_in_thread(ws.service(env), port=ws.project.config.environments[env].port)


def replaced_model(
    files: Mapping[str, bytes], version: int, onnx_model: bytes, *, name: str | None = None
) -> dict[str, bytes]:
    """A copy of a bundle's ``files`` renumbered to ``version`` (and renamed to ``name``),
    every hash right, with ``onnx_model`` as its model.onnx."""
    meta = json.loads(files[METADATA])
    meta["version"] = version
    meta["name"] = name or meta["name"]
    meta["files"][MODEL] = hashlib.sha256(onnx_model).hexdigest()
    return {**files, MODEL: onnx_model, METADATA: json.dumps(meta).encode()}


def renumbered(files: Mapping[str, bytes], version: int) -> dict[str, bytes]:
    """A copy of a bundle's ``files`` that says it is ``version``: the same model under a new
    number, for tests that need two versions but not two trainings."""
    meta = json.loads(files[METADATA])
    meta["version"] = version
    return {**files, METADATA: json.dumps(meta).encode()}


def register_copy(
    ws: Workspace,
    like: str,
    make: Callable[[Mapping[str, bytes], int], dict[str, bytes]] = renumbered,
) -> int:
    """Register ``like``'s bundle again as the next version of its model (gates passed), its
    files as ``make`` turns them (default: only renumbered)."""
    good = ws.registry.resolve(like)
    files = {name: ws.registry.read_file(good, name) for name in good.files}
    return ws.registry.register(
        good.name,
        lambda version: make(files, version),
        run_id=good.run_id,
        dataset=good.dataset,
        dataset_version=good.dataset_version,
        metrics=good.metrics,
        gates_passed=True,
        gate_reasons=[],
        actor="test",
    ).version


def unloadable(files: Mapping[str, bytes], version: int) -> dict[str, bytes]:
    """A copy of a bundle's ``files`` renumbered to ``version``, every hash right, whose
    model.onnx is a well-formed ONNX file ONNX Runtime refuses (an operator that does not exist)."""
    node = helper.make_node("NoSuchOp", ["input"], ["logits"])
    graph = helper.make_graph(
        [node],
        "garbage",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])],
    )
    onnx_bytes = helper.make_model(graph).SerializeToString()
    meta = json.loads(files[METADATA])
    meta["version"] = version
    meta["files"][MODEL] = hashlib.sha256(onnx_bytes).hexdigest()
    return {**files, MODEL: onnx_bytes, METADATA: json.dumps(meta).encode()}
