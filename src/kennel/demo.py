"""``make demo``: the pet park story on the embedded default (SQLite + a local folder).

What exists today runs end to end: simulate the park's day-camera data lake, ingest it into a
versioned dataset (validated, deduplicated, split 80/20), prove re-ingest is a no-op, append a
night batch as a child version, diff the two, train and tune a CNN on it, test it, export it to
ONNX with a parity check, register it with lineage, certify it as a live API in staging,
approve and release it to production, classify held-out images over HTTP, and verify the
audit chain.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from kennel.config import EnvironmentConfig, Project, init_project
from kennel.datasets import synth
from kennel.db.audit import verify
from kennel.deploy import environments
from kennel.pipeline.build import BuildOptions
from kennel.pipeline.lineage import model_lineage
from kennel.serve.server import free_port, start_in_thread
from kennel.wiring import Workspace

MARKER = ".kennel-demo"


def _fresh(out: Path) -> None:
    if out.exists():
        if not (out / MARKER).exists() and any(out.iterdir()):
            raise SystemExit(f"error: {out} is not empty and not a kennel demo folder; pick --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("created by `kennel demo`; safe to delete\n")


def run_demo(
    out: Path, *, count: int = 2000, epochs: int = 6, say: Callable[..., Any] = print
) -> dict[str, Any]:
    began = time.perf_counter()
    out = out.resolve()
    _fresh(out)
    workers = os.cpu_count() or 1
    project, _ = init_project(out / "project")
    # The demo serves in this process on free loopback ports (nothing else on the machine is
    # touched); `kennel serve` on the same project later uses kennel.yaml's ports.
    environments = {
        "staging": EnvironmentConfig(port=free_port(), alias="staging"),
        "production": EnvironmentConfig(port=free_port(), alias="production"),
    }
    project = Project(
        root=project.root, config=project.config.model_copy(update={"environments": environments})
    )
    ws = Workspace(project)
    timings: dict[str, float] = {}
    try:
        say(f"[bold]1. simulate[/bold] {count} day-camera images of the pet park")
        t = time.perf_counter()
        synth.generate(out / "lake" / "day", count, seed=1, scenario="day", workers=workers)
        timings["simulate"] = time.perf_counter() - t

        say("[bold]2. ingest[/bold] the day manifest into dataset 'park'")
        t = time.perf_counter()
        first = ws.ingestor().run(ws.source(str(out / "lake" / "day" / "manifest.csv")), "park")
        timings["ingest"] = time.perf_counter() - t
        rate = first.images_per_second
        say(f"   {first.version.ref}: {first.version.counts} ({rate:.0f} images/s)")

        say("[bold]3. re-ingest[/bold] the same data: the version id must not change")
        again = ws.ingestor().run(ws.source(str(out / "lake" / "day" / "manifest.csv")), "park")
        same = again.version.id == first.version.id and not again.created
        say(f"   {again.version.ref}: {'unchanged (same content, same id)' if same else 'CHANGED'}")

        say("[bold]4. append[/bold] 200 night-camera images as a child version")
        synth.generate(out / "lake" / "night", 200, seed=2, scenario="night", workers=workers)
        night = ws.ingestor().run(ws.source(str(out / "lake" / "night" / "manifest.csv")), "park")
        d = ws.catalog.diff(first.version, night.version)
        say(
            f"   {night.version.ref} (parent {first.version.short}): +{len(d.added)} rows, "
            f"{len(d.resplit)} earlier rows moved split"
        )

        say("[bold]5. build[/bold]: tune (2 TPE trials), train, test, export to ONNX, register")
        t = time.perf_counter()
        options = BuildOptions(arch="small_cnn", image_size=96, epochs=epochs, trials=2)
        built = ws.builder().build(night.version.ref, options, say=lambda m: say(f"   {m}"))
        timings["build"] = time.perf_counter() - t
        lineage = model_lineage(
            built.model.ref,
            registry=ws.registry,
            tracker=ws.tracker,
            catalog=ws.catalog,
            files_limit=1,
        )
        say(
            f"   lineage: {built.model.ref} <- run {built.run_id[:8]} <- "
            f"{lineage['dataset']['version']['ref']} <- {lineage['dataset']['source_files'][0]}",
            markup=False,
        )

        say("[bold]6. deploy[/bold]: staging application test, QA approval, production release")
        t = time.perf_counter()
        served = _deploy_and_serve(ws, built.model.ref, say)
        timings["deploy"] = time.perf_counter() - t

        with ws.db.session() as s:
            verdict = verify(s)
        say(
            f"[bold]7. audit[/bold] chain {'intact' if verdict.ok else 'BROKEN'}: "
            f"{verdict.checked} entries"
        )
    finally:
        ws.close()
    summary = {
        "project": str(project.root),
        "versions": [first.version.ref, night.version.ref],
        "rows": night.version.n_rows,
        "counts": night.version.counts,
        "reingest_same_id": same,
        "moved_split": len(d.resplit),
        "audit_ok": verdict.ok,
        "model": built.model.ref,
        "test_accuracy": round(built.evaluation["accuracy"], 4),
        "gates_passed": built.gates["passed"],
        "parity_passed": built.parity["passed"],
        "certified": served["certified"],
        "production_version": served["version"],
        "production_accuracy": served["accuracy"],
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "wall_s": round(time.perf_counter() - began, 1),
    }
    say(
        f"[bold]done[/bold] in {summary['wall_s']}s; explore it with e.g. "
        f"`kennel models list -C {project.root}`"
    )
    say("monitoring and governance arrive with the next milestone (see README).")
    checks = [same, verdict.ok, not d.resplit, built.parity["passed"], served["certified"]]
    if not all(checks):
        raise SystemExit("error: the demo's own checks failed")
    return summary


def _deploy_and_serve(ws: Workspace, ref: str, say: Callable[..., Any]) -> dict[str, Any]:
    """Certify in staging, approve as the demo's QA, release, then call production over HTTP."""
    envs = ws.project.config.environments
    staging = start_in_thread(ws.service("staging"), port=envs["staging"].port)
    production = start_in_thread(ws.service("production"), port=envs["production"].port)
    try:
        releases = ws.releases()
        deployed = releases.deploy(ref, "staging", actor="demo")
        cert = deployed.certification
        say(
            f"   certification {'passed' if cert.passed else 'FAILED'}: {cert.images} images, "
            f"{cert.label_mismatches} mismatches, p99 {cert.p99_ms:.0f} ms"
        )
        if not cert.passed:
            return {"certified": False, "version": None, "accuracy": 0.0}
        qa_token, _ = ws.tokens.create("qa", "demo-qa")
        releases.decide(
            ref,
            "approved",
            who=ws.tokens.identify(qa_token),
            note="the demo auto-approves as its own QA",
        )
        say("   approved by demo-qa (the demo auto-approves; real projects use a person)")
        releases.release(ref, "production", actor="demo", reason="demo release")
        model = ws.registry.resolve(ref)
        environments.wait_for_version(production.url, model.version)
        rows = [r for r in ws.catalog.rows(ws.catalog.resolve("park")) if r.split == "test"]
        correct = 0
        with httpx.Client(base_url=production.url, timeout=30) as client:
            sample = rows[:: max(1, len(rows) // 100)][:100]  # spread over cats and dogs
            for row in sample:
                answer = client.post(
                    "/v1/predict",
                    content=ws.content.get(row.sha256),
                    headers={"content-type": "image/jpeg", "x-kennel-source": "demo-camera"},
                ).json()
                correct += answer["label"] == row.label
        accuracy = correct / max(1, len(sample))
        say(
            f"   production serves {model.ref}: {accuracy:.0%} of {len(sample)} "
            f"held-out images right over HTTP ({production.url})"
        )
        return {"certified": True, "version": model.version, "accuracy": round(accuracy, 4)}
    finally:
        staging.stop()
        production.stop()
