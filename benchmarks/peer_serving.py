"""Serving, side by side: ``kennel serve`` against ``mlflow models serve`` running a custom
pyfunc (``peer_mlflow_model.py``) on the same ONNX file, the same 200 real JPEGs and the same
client (``serving._load``: http.client, one keep-alive connection per thread); and kennel's
in-process batched Predictor (batch 16) as the compute limit. Since c clients can fill a batch
of at most c, the in-process Predictor is also timed at batch min(c, 16): the same work the
service does, with no HTTP, no client and no journal (at one client: decode, then a batch
of one, in turn). Rounds alternate the systems.

On a shared machine the figures drift with the neighbours' load, so each ratio is taken
within a round (the systems one after the other, seconds apart) and the median of those is
reported, with the load average; so is each system's CPU time per request (its whole process
tree), which the neighbours disturb far less than requests per second. Each run also keeps
the time the machine lost while it ran (``stall_ms``: steal time and the kernel's pressure
stall totals), so that a tail which every system shows in one round can be told apart from
a server's own.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil
import yaml

from kennel.serve.runtime import INT8, Bundle, Predictor
from kennel.serve.server import free_port
from kennel.wiring import Workspace
from peer_envs import MLFLOW, peer_env
from quick_model import SHARED, quick_model
from serving import _load

SAVE = """
import sys, mlflow
mlflow.pyfunc.save_model(sys.argv[1], python_model=sys.argv[2],
    artifacts={"onnx": sys.argv[3], "meta": sys.argv[4]},
    pip_requirements=["onnxruntime", "pillow"])
"""
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def photos(count: int = 200) -> list[bytes]:
    """``count`` real photos from the 10k set (a fixed sample, cats and dogs)."""
    with zipfile.ZipFile(SHARED / "dogs-vs-cats-10k.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        return [archive.read(n) for n in random.Random(17).sample(names, count)]


def batch_run(
    predictor: Predictor, images: list[bytes], count: int, batch: int = 16
) -> dict[str, float]:
    """Images/s and CPU ms per image (this process, every thread) of ``Predictor.predict``."""
    began, cpu = time.perf_counter(), time.process_time()
    for lo in range(0, count, batch):
        predictor.predict([images[(lo + i) % len(images)] for i in range(min(batch, count - lo))])
    return {
        "rps": round(count / (time.perf_counter() - began), 1),
        "cpu_ms": round((time.process_time() - cpu) / count * 1000, 2),
    }


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and its live descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def machine_stalls() -> dict[str, float]:
    """Counters of time this virtual machine lost, in ms since boot: ``steal`` (the host ran
    something else on our virtual CPUs, /proc/stat) and the kernel's pressure stall totals
    (/proc/pressure: ``cpu_some``, tasks runnable but waiting for a CPU; ``io_some``/``io_full``,
    some/all tasks waiting on storage). Where they are missing, an empty dict."""
    out: dict[str, float] = {}
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        out["steal"] = int(fields[8]) * 1000 / os.sysconf("SC_CLK_TCK")
        for kind in ("cpu", "io"):
            for line in Path(f"/proc/pressure/{kind}").read_text().splitlines():
                scope, *_, total = line.split()
                out[f"{kind}_{scope}"] = int(total.split("=")[1]) / 1000
    except (OSError, IndexError, ValueError):
        return out
    return out


def served(
    pid: int, port: int, bodies: list[bytes], c: int, requests: int, path: str, ctype: str
) -> dict[str, float]:
    """``serving._load`` against one server, with its CPU ms per request and the client's
    (this process: the load generator's threads, on the same cores as the server), and the
    time the machine lost meanwhile (``stall_ms``: a tail that every system shows in the same
    round is the machine's, not a server's)."""
    before, client, stalls = tree_cpu(pid), time.process_time(), machine_stalls()
    stats = _load(port, bodies, c, requests, path=path, content_type=ctype)
    after = machine_stalls()
    return {
        **stats,
        "cpu_ms": round((tree_cpu(pid) - before) / requests * 1000, 2),
        "client_cpu_ms": round((time.process_time() - client) / requests * 1000, 2),
        "stall_ms": {k: round(after[k] - v, 1) for k, v in stalls.items() if k in after},
    }


@contextmanager
def process(
    cmd: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _ready(port: int, path: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for ``path`` to answer 200; a server that exits first fails with its log's end."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"{log.stem} exited with {proc.returncode}: {' | '.join(tail)}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    raise RuntimeError(f"{log.stem} did not answer {path} within 300 s")


def _post(port: int, path: str, body: bytes, content_type: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers={"content-type": content_type})
        answer = conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{path} on port {port} answered {answer.status}: {data[:300]!r}")
        return json.loads(data)
    finally:
        conn.close()


def _mlflow_model(env: Path, bundle: Bundle, work: Path) -> Path:
    """The bundle's fp32 ONNX file and preprocessing, saved as an MLflow pyfunc model."""
    work.mkdir(parents=True)
    (work / "model.onnx").write_bytes(bundle.files["model.onnx"])
    pre = bundle.meta["preprocessing"]
    meta = {"size": bundle.image_size, "labels": bundle.labels, "mean": pre["mean"],
            "std": pre["std"], "temperature": bundle.meta.get("temperature")}  # fmt: skip
    (work / "meta.json").write_text(json.dumps(meta))
    code = Path(__file__).with_name("peer_mlflow_model.py")
    subprocess.run(
        [str(env / "bin" / "python"), "-c", SAVE, str(work / "pyfunc"), str(code),
         str(work / "model.onnx"), str(work / "meta.json")],
        check=True, env={**os.environ, **QUIET}, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return work / "pyfunc"


def _project_copy(project: Path, dest: Path, *, int8: bool, log_sync: bool = False) -> Path:
    shutil.copytree(project, dest)
    path = dest / "kennel.yaml"
    config = yaml.safe_load(path.read_text())
    config.setdefault("serve", {}).update(prefer_int8=int8, log_sync=log_sync)
    path.write_text(yaml.safe_dump(config))
    return dest


def _median(rounds: list[dict[str, float]]) -> dict[str, Any]:
    chosen = sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]
    return {
        **chosen,
        "rounds_rps": [r["rps"] for r in rounds],
        "rounds_p99_ms": [r["p99_ms"] for r in rounds],  # the tail of every round, not one
        "rounds_stall_ms": [r.get("stall_ms", {}) for r in rounds],
        "cpu_ms": statistics.median(r["cpu_ms"] for r in rounds),
        "client_cpu_ms": statistics.median(r.get("client_cpu_ms", 0.0) for r in rounds),
    }


def serving(
    work: Path,
    *,
    requests: int,
    rounds: int,
    concurrency: list[int],
    mlflow_workers: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    env = peer_env("mlflow")
    trained, done = work / "model" / "p", work / "model" / ".trained"
    if not done.is_file():  # a kept --workdir reuses its model
        say("serving: training the Lite0 160 px model on the shared photos (quick_model)")
        shutil.rmtree(work, ignore_errors=True)
        trained = quick_model(work / "model", image_size=160, quantize=True)
        done.touch()
    for old in ("mlflow", "serve-fp32", "serve-int8", "serve-fsync"):
        shutil.rmtree(work / old, ignore_errors=True)
    images = photos()
    ws = Workspace.load(trained)
    try:
        ref = f"{ws.project.config.model.name}@production"
        model = ws.registry.resolve(ref)
        files = {name: ws.registry.read_file(model, name) for name in model.files}
    finally:
        ws.close()
    fp32 = Predictor(Bundle.from_files(files))
    int8 = Predictor(Bundle.from_files(files, prefer_int8=True)) if INT8 in files else None
    pyfunc = _mlflow_model(env, fp32.bundle, work / "mlflow")
    projects = {"kennel": _project_copy(trained, work / "serve-fp32", int8=False)}
    # the same fp32 service with the journal fdatasynced before each answer (serve.log_sync:
    # true: not even a power cut loses an answered prediction; MLflow keeps no log at all)
    projects["kennel_fsync"] = _project_copy(
        trained, work / "serve-fsync", int8=False, log_sync=True
    )
    if int8 is not None:
        projects["kennel_int8"] = _project_copy(trained, work / "serve-int8", int8=True)
    ports = {name: free_port() for name in [*projects, "mlflow"]}
    b64 = [base64.b64encode(data).decode() for data in images]
    bodies = {
        "mlflow": [
            json.dumps({"dataframe_split": {"columns": ["image"], "data": [[s]]}}).encode()
            for s in b64
        ],
        **{name: images for name in projects},
    }
    route = {name: ("/v1/predict", "image/jpeg") for name in projects}
    route["mlflow"] = ("/invocations", "application/json")
    for predictor in (fp32, int8):
        if predictor is not None:
            batch_run(predictor, images, 64)  # warm up
    results: list[dict[str, Any]] = []
    peer_env_vars = {**os.environ, **QUIET, "PATH": f"{env / 'bin'}:{os.environ['PATH']}"}
    with ExitStack() as running:
        servers = {"mlflow": running.enter_context(process(
            [str(env / "bin" / "mlflow"), "models", "serve", "-m", str(pyfunc),
             "-h", "127.0.0.1", "-p", str(ports["mlflow"]), "--env-manager", "local",
             "-w", str(mlflow_workers)],
            work / "mlflow.log", env=peer_env_vars))}  # fmt: skip
        for name, project in projects.items():
            servers[name] = running.enter_context(process(
                [sys.executable, "-m", "kennel.cli", "serve", "--env", "production",
                 "--port", str(ports[name]), "--drain", "0", "-C", str(project)],
                work / f"{name}.log"))  # fmt: skip
        for name, proc in servers.items():
            ready = "/ping" if name == "mlflow" else "/health/ready"
            _ready(ports[name], ready, proc, work / f"{name}.log")
        agreement = _agreement(ports, bodies, route, count=20)
        say(f"serving: services ready; label agreement kennel vs MLflow {agreement}")
        for name, port in ports.items():  # warm up: first batches of each size, connections
            path, ctype = route[name]
            _load(port, bodies[name], 8, 64, path=path, content_type=ctype)
        for c in concurrency:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
            inproc: dict[str, list[dict[str, float]]] = {"fp32": [], "int8": [], "fp32_at_c": []}
            load = [round(os.getloadavg()[0], 2)]
            for r in range(rounds):
                inproc["fp32"].append(batch_run(fp32, images, requests))
                if int8 is not None:
                    inproc["int8"].append(batch_run(int8, images, requests))
                # c clients can share a batch of at most c: the same work at that batch size
                inproc["fp32_at_c"].append(
                    batch_run(fp32, images, requests, batch=min(c, 16))
                    if c < 16
                    else inproc["fp32"][-1]
                )
                for name, port in ports.items():
                    path, ctype = route[name]
                    runs[name].append(
                        served(servers[name].pid, port, bodies[name], c, requests, path, ctype)
                    )
                say(f"serving: concurrency {c} round {r + 1}/{rounds} (load "
                    f"{os.getloadavg()[0]:.1f}): "
                    + ", ".join(f"{n} {v[-1]['rps']} req/s" for n, v in runs.items())
                    + f", in-process {inproc['fp32'][-1]['rps']} img/s")  # fmt: skip
            load.append(round(os.getloadavg()[0], 2))
            results.append({**_row(c, runs, inproc), "load": load})
    return {
        "model": "efficientnet_lite0, 160 px, quick_model (1,000 shared photos, head only)",
        "images": len(images),
        "requests": requests,
        "rounds": rounds,
        "mlflow": MLFLOW,
        "mlflow_workers": mlflow_workers,
        "int8_in_bundle": int8 is not None,
        "quantization": fp32.bundle.meta.get("quantization"),  # packaging's int8 decision
        "agreement": agreement,
        "results": results,
    }


def _agreement(
    ports: dict[str, int],
    bodies: dict[str, list[bytes]],
    route: dict[str, tuple[str, str]],
    count: int,
) -> str:
    """Do both services give the same label for the same photos (the pyfunc does kennel's
    preprocessing)? 'n/m' over the first ``count`` photos."""
    same = 0
    for i in range(count):
        ours = _post(ports["kennel"], *_req(route["kennel"], bodies["kennel"][i]))["label"]
        theirs = _post(ports["mlflow"], *_req(route["mlflow"], bodies["mlflow"][i]))
        same += ours == theirs["predictions"][0]["label"]
    return f"{same}/{count}"


def _req(route: tuple[str, str], body: bytes) -> tuple[str, bytes, str]:
    return route[0], body, route[1]


def _row(
    c: int, runs: dict[str, list[dict[str, float]]], inproc: dict[str, list[dict[str, float]]]
) -> dict[str, Any]:
    """The median round of each system, and each ratio as the median of its per-round values
    (both sides of a ratio measured seconds apart, under the same neighbours)."""
    row: dict[str, Any] = {"concurrency": c}
    row.update({name: _median(v) for name, v in runs.items()})
    for kind in ("fp32", "int8"):
        rounds = inproc[kind]
        row[f"in_process_{kind}"] = statistics.median(r["rps"] for r in rounds) if rounds else None
        row[f"in_process_{kind}_cpu_ms"] = (
            statistics.median(r["cpu_ms"] for r in rounds) if rounds else None
        )

    def ratio(name: str, over: list[float]) -> float:
        pairs = zip(runs[name], over, strict=True)
        return round(statistics.median(r["rps"] / o for r, o in pairs), 2)

    # The most any server could reach against the in-process Predictor while the client
    # shares the cores: a server doing the Predictor's work and nothing else, the client
    # taking its own CPU per request (where the cores are the limit: 8 clients and more)
    inproc_cpu, client_cpu = row["in_process_fp32_cpu_ms"], row["kennel"]["client_cpu_ms"]
    if inproc_cpu:
        row["in_process_ceiling"] = round(inproc_cpu / (inproc_cpu + client_cpu), 2)
    mlflow = [r["rps"] for r in runs["mlflow"]]
    row["kennel_over_mlflow"] = ratio("kennel", mlflow)
    row["kennel_over_in_process"] = ratio("kennel", [r["rps"] for r in inproc["fp32"]])
    at_c = inproc.get("fp32_at_c") or []
    if at_c:
        row["in_process_fp32_at_c"] = statistics.median(r["rps"] for r in at_c)
        row["kennel_over_in_process_at_c"] = ratio("kennel", [r["rps"] for r in at_c])
    if "kennel_fsync" in row:
        row["kennel_fsync_over_mlflow"] = ratio("kennel_fsync", mlflow)
    if "kennel_int8" in row:
        row["kennel_int8_over_mlflow"] = ratio("kennel_int8", mlflow)
        row["kennel_int8_over_in_process_int8"] = ratio(
            "kennel_int8", [r["rps"] for r in inproc["int8"]]
        )
    return row
