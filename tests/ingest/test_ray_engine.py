"""Ingest on Ray: a real local cluster of a head (no CPUs: it only holds the driver's objects)
and two one-CPU worker nodes on this machine. The same source gives the same version as the
local engine; a worker process killed while its task runs and a whole worker node killed
mid-run (while it runs a task, as a rule) lose and duplicate nothing; a cluster that cannot be
reached leaves nothing behind."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db.schema import IngestRecordRow, IngestRunRow
from kennel.errors import ConfigError, EngineError
from kennel.ingest.ray_engine import RayEngine, probe
from kennel.ingest.run import Ingestor, IngestReport
from kennel.progress import Event
from kennel.wiring import Workspace
from tests.conftest import make_project
from tests.raycluster import NODE, running, workers

TASK = "kennel-ingest"  # the task name RayEngine gives; Ray shows it as the process title
runner = CliRunner()


def _soon(look: Callable[[], list[Any]], seconds: float = 3.0) -> list[Any]:
    """What ``look`` finds within ``seconds`` (looking every few milliseconds), else []."""
    deadline = time.monotonic() + seconds
    while not (found := look()) and time.monotonic() < deadline:
        time.sleep(0.005)
    return found


def _records(ws: Workspace) -> tuple[int, int]:
    with ws.db.session() as s:
        total = s.scalar(select(func.count()).select_from(IngestRecordRow)) or 0
        uris = s.scalar(select(func.count(IngestRecordRow.uri.distinct()))) or 0
    return total, uris


def _same_result(ray_ws: Workspace, ray_run: IngestReport, local_run: IngestReport) -> None:
    assert ray_run.version.id == local_run.version.id
    assert ray_run.version.counts == local_run.version.counts
    assert ray_run.quarantined == local_run.quarantined
    assert ray_run.quarantine_sample == local_run.quarantine_sample
    assert ray_run.exact_duplicate_groups == local_run.exact_duplicate_groups
    assert ray_run.near_duplicate_pairs == local_run.near_duplicate_pairs
    assert ray_run.added == local_run.added and ray_run.processed == ray_run.files
    assert _records(ray_ws) == (ray_run.files, ray_run.files)  # each file once, none twice
    rows = ray_ws.catalog.rows(ray_run.version)
    # the workers wrote every accepted file's bytes into this project's own artifact store
    assert all(ray_ws.content.exists(r.sha256) for r in rows)
    assert not [k for k in ray_ws.content.blobs.list() if ".tmp-" in k]


@pytest.mark.slow
def test_ten_thousand_photos_give_the_local_engines_version(
    cluster: Any, shared_data: Path, tmp_path: Path
) -> None:
    big = str(shared_data / "dogs-vs-cats-10k.zip")
    local_ws = Workspace(make_project(tmp_path / "local", workers=2))
    ray_ws = Workspace(make_project(tmp_path / "ray"))
    try:
        local_run = local_ws.ingestor().run(local_ws.source(big), "pets")
        ray_run = ray_ws.ingestor(engine="ray", address=cluster.address).run(
            ray_ws.source(big), "pets"
        )
        print(f"10k: local {local_run.seconds:.1f}s, ray (2 nodes x 1 CPU) {ray_run.seconds:.1f}s")
        assert ray_run.files == 10_000 and ray_run.added == 10_000
        _same_result(ray_ws, ray_run, local_run)
    finally:
        local_ws.close()
        ray_ws.close()


def test_killed_worker_and_node_mid_run_lose_and_duplicate_nothing(
    cluster: Any, shared_data: Path, tmp_path: Path
) -> None:
    mini = str(shared_data / "dogs-vs-cats-mini.zip")
    local_ws = Workspace(make_project(tmp_path / "local"))
    ray_ws = Workspace(make_project(tmp_path / "ray"))
    nodes = workers(cluster)
    victim: list[Any] = []  # the node that dies: the one where no worker was killed
    killed: dict[str, int] = {}

    def busy_worker() -> list[tuple[Any, psutil.Process]]:
        return [(node, proc) for node in nodes for proc in running(node, TASK)]

    def kill_while_tasks_run(event: Event) -> None:
        # a task lasts milliseconds: a look at one instant may fall between two of a node's
        # tasks, so each kill waits (a little) for a node to be running one; and each leaves
        # files to check after it. Ray may give every task to one node for a while (seen in
        # whole-suite runs), so the worker dies on whichever node is busy and the other node
        # dies whole.
        if not event.done or event.total is None or event.done > event.total - 40:
            return
        if "worker" not in killed and (busy := _soon(busy_worker)):
            node, proc = busy[0]
            proc.send_signal(signal.SIGKILL)  # one worker process dies mid-task
            killed["worker"] = event.done
            victim.append(next(n for n in nodes if n is not node))
        elif "worker" in killed and "node" not in killed:
            # Mid-task as a rule. But Ray sometimes leaves the second node without a task from
            # the worker's death to the end: then it dies at the last chance, mid-run, with
            # what it holds (leases, object store) all the same.
            busy_node = bool(_soon(lambda: running(victim[0], TASK), 0.5))
            if busy_node or event.done > event.total - 60:
                cluster.remove_node(victim[0], allow_graceful=False)  # a whole node dies
                killed["node"] = event.done
                print(f"node killed at {event.done} files {'mid-task' if busy_node else 'idle'}")

    try:
        local_run = local_ws.ingestor().run(local_ws.source(mini), "pets")
        data = ray_ws.project.config.data
        engine = RayEngine(cluster.address)
        ingestor = Ingestor(
            ray_ws.db, ray_ws.content, ray_ws.project.artifacts_url, data, engine=engine, chunk=4
        )
        ray_run = ingestor.run(ray_ws.source(mini), "pets", progress=kill_while_tasks_run)
        assert set(killed) == {"worker", "node"}, killed
        assert killed["node"] < ray_run.files  # both died while files were left to check
        _same_result(ray_ws, ray_run, local_run)
        assert not ray_run.resumed  # Ray retried the lost tasks: no second ingest was needed
    finally:
        local_ws.close()
        ray_ws.close()
        if len(workers(cluster)) < len(nodes):
            cluster.add_node(**NODE)  # back to two workers for whoever comes next
            cluster.wait_for_nodes()


def test_cli_ingests_on_the_cluster(cluster: Any, shared_data: Path, tmp_path: Path) -> None:
    mini = str(shared_data / "dogs-vs-cats-mini.zip")
    outs = []
    for name, extra in (("local", []), ("ray", ["--engine", "ray", "--address", cluster.address])):
        root = str(make_project(tmp_path / name).root)
        result = runner.invoke(
            app, ["data", "ingest", mini, "-d", "pets", "-C", root, "--json", *extra]
        )
        assert result.exit_code == 0, result.output
        outs.append(json.loads(result.stdout))
    assert outs[0]["version"]["version"] == outs[1]["version"]["version"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _nothing_written(root: Path) -> None:
    ws = Workspace(make_project(root))
    try:
        with ws.db.session() as s:
            assert s.scalar(select(func.count()).select_from(IngestRunRow)) == 0
        assert ws.catalog.versions() == []
    finally:
        ws.close()


def test_an_unreachable_cluster_is_one_line_and_leaves_nothing(
    shared_data: Path, tmp_path: Path
) -> None:
    mini = str(shared_data / "dogs-vs-cats-mini.zip")
    root = make_project(tmp_path / "p").root
    address = f"127.0.0.1:{_closed_port()}"
    began = time.monotonic()
    args = ["data", "ingest", mini, "-d", "pets", "-C", str(root), "--engine", "ray"]
    result = runner.invoke(app, [*args, "--address", address])
    assert time.monotonic() - began < 30
    assert result.exit_code == 18, result.output
    assert address in result.stderr and result.stderr.count("\n") == 1, result.stderr
    _nothing_written(root)
    # the next ingest is a fresh one, not blocked by (or resuming) a half-started run
    ok = runner.invoke(app, ["data", "ingest", mini, "-d", "pets", "-C", str(root), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["resumed"] is False


def test_something_else_listening_is_not_taken_for_a_cluster() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"

        def answer_like_redis() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"-ERR unknown command\r\n")

        thread = threading.Thread(target=answer_like_redis, daemon=True)
        thread.start()
        with pytest.raises(EngineError, match=f"{address} is unreachable: no Ray head"):
            probe(address, timeout=5)
        thread.join(5)

    with socket.socket() as silent:  # accepts, then never says a word: bounded by the timeout
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        began = time.monotonic()
        with pytest.raises(EngineError, match="timed out"):
            probe(address, timeout=1)
        assert time.monotonic() - began < 5


def test_a_local_folder_store_is_refused_for_another_machines_cluster(
    shared_data: Path, tmp_path: Path
) -> None:
    mini = str(shared_data / "dogs-vs-cats-mini.zip")
    root = make_project(tmp_path / "p").root
    args = ["data", "ingest", mini, "-d", "pets", "-C", str(root), "--engine", "ray"]
    result = runner.invoke(app, [*args, "--address", "203.0.113.7:6379"])  # TEST-NET-3
    assert result.exit_code == 2, result.output
    assert "203.0.113.7:6379" in result.stderr and "local folder" in result.stderr
    assert result.stderr.count("\n") == 1
    _nothing_written(root)
    for bad, code, text in (
        (["--address", "no-port"], 2, "not HOST:PORT"),
        (["--engine", "local", "--address", "127.0.0.1:6379"], 2, "--address"),
        (["--address", ""], 2, "--address is empty"),  # not a new local Ray
        (["--address", "  "], 2, "--address is empty"),
        (["--workers", "-1"], 2, "--workers"),
        (["--workers", "2", "--address", "127.0.0.1:6379"], 2, "has its own CPUs"),
    ):
        plain = ["data", "ingest", mini, "-d", "pets", "-C", str(root)]
        result = runner.invoke(app, [*(args if "--engine" not in bad else plain), *bad])
        assert result.exit_code == code and text in result.stderr, result.output
        assert result.stderr.count("\n") == 1, result.stderr
    _nothing_written(root)


def test_a_store_that_lives_in_one_process_is_refused(tmp_path: Path) -> None:
    ws = Workspace(
        make_project(tmp_path / "p", sections={"store": {"artifacts_url": "memory://x"}})
    )
    try:
        with pytest.raises(ConfigError, match="lives in one process"):
            ws.ingestor(engine="ray").run(ws.source(str(tmp_path)), "pets")
    finally:
        ws.close()


def test_no_address_starts_a_new_local_instance_not_a_running_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ray.init(address=None) would attach to a ``ray start`` cluster found on this machine;
    without --address or RAY_ADDRESS the engine asks for a fresh local instance. ray.init is
    replaced only to capture its arguments."""
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    seen: dict[str, Any] = {}

    def fake_init(**kwargs: Any) -> None:
        seen.update(kwargs)
        raise ConnectionError("stop here")

    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    engine = RayEngine(num_cpus=1)
    with pytest.raises(EngineError, match="a new local Ray instance: stop here"), engine.session():
        pass
    assert seen["address"] == "local"
    assert seen["num_cpus"] == 1
