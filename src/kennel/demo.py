"""``make demo``: the pet park story on the embedded default (SQLite + a local folder).

Simulate the park's day-camera data lake, ingest it into a versioned dataset (validated,
deduplicated, split 80/20; re-ingest is a no-op), tune and train a CNN, test it, export it to
ONNX with a parity check, register it with lineage, certify it as a live API in staging,
approve (the demo is its own QA) and release it. Then the park runs: a day of camera traffic
with the true labels arriving later as feedback, monitored; the cameras switch to night mode,
and monitoring raises drift and accuracy alerts; the accuracy alert's action retrains on the
data plus the labelled night images, warm-started from the champion, and deploys to staging;
the demo approves and releases it, and the next night's metrics recover. It prints a summary
table, writes one HTML report telling the story, and verifies the audit chain.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.markup import escape

from kennel import pages
from kennel.config import (
    EnvironmentConfig,
    GatesConfig,
    Project,
    RuleConfig,
    StoreConfig,
    init_project,
)
from kennel.datasets import synth
from kennel.db.audit import verify
from kennel.deploy import environments
from kennel.fsutil import write_text_atomic
from kennel.govern.cycle import Cycle, monitor_once
from kennel.pipeline.build import BuildOptions
from kennel.pipeline.lineage import model_lineage
from kennel.progress import Event, Progress, lines, silent
from kennel.serve.auth import Identity
from kennel.serve.server import RunningServer, free_port, start_in_thread
from kennel.wiring import Workspace

MARKER = ".kennel-demo"
Tell = Callable[[str], None]  # one line of the story, as a ``demo`` progress event
# The default rules the story needs; the accuracy alert also retrains.
RULES = ("data-drift", "accuracy-drop", "estimated-accuracy-drop")


def _rules(defaults: list[RuleConfig]) -> list[RuleConfig]:
    return [
        r.model_copy(update={"actions": ["log", "retrain"]}) if r.name == "accuracy-drop" else r
        for r in defaults
        if r.name in RULES
    ]


def _teller(progress: Progress) -> Tell:
    return lambda message: progress(Event("demo", message))


def _fresh(out: Path) -> None:
    if out.exists():
        if not (out / MARKER).exists() and any(out.iterdir()):
            raise SystemExit(f"error: {out} is not empty and not a kennel demo folder; pick --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("created by `kennel demo`; safe to delete\n")


def _project(
    out: Path, epochs: int, image_size: int, gates: GatesConfig | None, store: StoreConfig | None
) -> Project:
    project, _ = init_project(out / "project")
    # The demo serves in this process on free loopback ports (nothing else on the machine is
    # touched); `kennel serve` on the same project later uses kennel.yaml's ports.
    config = project.config
    return Project(
        root=project.root,
        config=config.model_copy(
            update={
                "environments": {
                    "staging": EnvironmentConfig(port=free_port(), alias="staging"),
                    "production": EnvironmentConfig(port=free_port(), alias="production"),
                },
                "train": config.train.model_copy(
                    update={"arch": "small_cnn", "image_size": image_size, "epochs": epochs}
                ),
                "serve": config.serve.model_copy(update={"poll_s": 0.3}),
                "gates": gates or config.gates,
                "store": store or config.store,
                # the warm start must learn the night from a few hundred labelled images
                "monitor": config.monitor.model_copy(
                    update={"rules": _rules(config.monitor.rules), "retrain_epochs": epochs}
                ),
            }
        ),
    )


def run_demo(
    out: Path,
    *,
    count: int = 1500,
    epochs: int = 6,
    image_size: int = 96,
    traffic: int = 250,
    trials: int = 1,
    gates: GatesConfig | None = None,
    store: StoreConfig | None = None,
    progress: Progress = silent,
) -> dict[str, Any]:
    """The story, told through ``progress`` as ``demo`` events (rich markup in the messages);
    returns the summary, whose ``ok`` says whether the demo's own checks held. ``store``
    replaces the embedded default (SQLite + a local folder), e.g. with PostgreSQL + S3."""
    say = _teller(progress)
    began = time.perf_counter()
    out = out.resolve()
    _fresh(out)
    workers = os.cpu_count() or 1
    project = _project(out, epochs, image_size, gates, store)
    ws = Workspace(project)
    timings: dict[str, float] = {}
    story: list[dict[str, Any]] = []
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
        say(f"   {first.version.ref}: {_counts(first.version.counts)} ({rate:.0f} images/s)")
        again = ws.ingestor().run(ws.source(str(out / "lake" / "day" / "manifest.csv")), "park")
        same = again.version.id == first.version.id and not again.created
        say(f"   re-ingest: {'unchanged (same content, same id)' if same else 'CHANGED'}")

        what = f"tune ({trials} TPE trials), train" if trials > 1 else "train"
        say(f"[bold]3. build[/bold]: {what}, test, export to ONNX, register")
        t = time.perf_counter()
        options = BuildOptions(
            arch="small_cnn", image_size=image_size, epochs=epochs, trials=trials
        )
        built = ws.builder().build(first.version.ref, options, lines(say, "   "))
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
            + escape(
                f"{lineage['dataset']['version']['ref']} <- {lineage['dataset']['source_files'][0]}"
            )
        )
        envs = project.config.environments
        staging = start_in_thread(ws.service("staging"), port=envs["staging"].port)
        production = start_in_thread(ws.service("production"), port=envs["production"].port)
        try:
            say("[bold]4. deploy[/bold]: staging application test, QA approval, release")
            t = time.perf_counter()
            certified = _ship(ws, production, built.model.ref, say)
            timings["deploy"] = time.perf_counter() - t

            t = time.perf_counter()
            phases = [
                ("day", "day", 101, "a day of camera traffic, labels arriving later"),
                ("night", "night", 102, "the cameras switch to night mode"),
            ]
            for n, (name, scenario, seed, what) in enumerate(phases, start=5):
                say(f"[bold]{n}. {name}[/bold]: {what}")
                story.append(_phase(ws, production, name, scenario, seed, traffic, say))
            timings["traffic+monitor"] = time.perf_counter() - t

            retrained = any("retrain" in a for p in story for a in p["actions"].values())
            candidate = ws.registry.resolve("pets@staging")
            if retrained and candidate.version != built.model.version:
                say(f"[bold]7. release[/bold] the retrained {candidate.ref} after QA approval")
                t = time.perf_counter()
                _approve_and_release(ws, production, candidate.ref, say)
                timings["release"] = time.perf_counter() - t
                say("[bold]8. next night[/bold]: does the new model recover?")
                story.append(_phase(ws, production, "next night", "night", 103, traffic, say))
        finally:
            staging.stop()
            production.stop()
        with ws.db.session() as s:
            verdict = verify(s)
        say(
            f"[bold]audit[/bold] chain {'intact' if verdict.ok else 'BROKEN'}: "
            f"{verdict.checked} entries"
        )
    finally:
        ws.close()
    summary = {
        "project": str(project.root),
        "versions": [first.version.ref],
        "rows": first.version.n_rows,
        "counts": first.version.counts,
        "reingest_same_id": same,
        "audit_ok": verdict.ok,
        "model": built.model.ref,
        "test_accuracy": round(built.evaluation.accuracy, 4),
        "gates_passed": built.gates.passed,
        "parity_passed": built.parity.passed,
        "certified": certified,
        "phases": [{k: v for k, v in p.items() if k != "cycle"} for p in story],
        "recovered": _recovered(story),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "wall_s": round(time.perf_counter() - began, 1),
    }
    report = out / "demo-report.html"
    write_text_atomic(report, _story_html(summary))
    summary["report"] = str(report)
    summary["ok"] = all([same, verdict.ok, built.parity.passed, certified])
    return summary


def _ship(ws: Workspace, production: RunningServer, ref: str, say: Tell) -> bool:
    """Certify in staging; if it passes, approve as the demo's QA and release."""
    deployed = ws.releases().deploy(ref, "staging", who=_holder(ws, "operator", "demo-operator"))
    cert = deployed.certification
    say(
        f"   certification {'passed' if cert.passed else 'FAILED'}: {cert.images} images, "
        f"{cert.label_mismatches} mismatches, p99 {cert.p99_ms:.0f} ms"
    )
    if cert.passed:
        _approve_and_release(ws, production, ref, say)
    return cert.passed


def _counts(counts: dict[str, dict[str, int]]) -> str:
    """``cat 480/120, dog 480/120 (train/test)``: a version's images per label and split."""
    splits = sorted({split for per in counts.values() for split in per}, key=_SPLITS.index)
    per_label = ", ".join(
        f"{label} {'/'.join(str(per.get(split, 0)) for split in splits)}"
        for label, per in sorted(counts.items())
    )
    return f"{per_label} ({'/'.join(splits)})"


_SPLITS = ["train", "validation", "test"]


def _holder(ws: Workspace, role: str, name: str) -> Identity:
    """The demo's people act with real tokens, as a team would (one per role and name)."""
    for row in ws.tokens.all():
        if (row["name"], row["role"], row["revoked"]) == (name, role, False):
            return Identity(str(row["id"]), name, role)
    _token, who = ws.tokens.create(role, name, actor="demo")
    return who


def _approve_and_release(ws: Workspace, production: RunningServer, ref: str, say: Tell) -> None:
    releases = ws.releases()
    releases.decide(
        ref, "approved", who=_holder(ws, "qa", "demo-qa"), note="the demo auto-approves as QA"
    )
    releases.release(
        ref, "production", who=_holder(ws, "operator", "demo-operator"), reason="demo release"
    )
    environments.wait_for_version(production.url, ws.registry.resolve(ref).version)
    say(f"   approved by demo-qa (the demo auto-approves), released: production serves {ref}")


def _phase(
    ws: Workspace,
    production: RunningServer,
    name: str,
    scenario: str,
    seed: int,
    count: int,
    say: Tell,
) -> dict[str, Any]:
    """Camera traffic to production, then the true labels as feedback, then one monitoring
    cycle over exactly this phase's window (alerts and their actions included)."""
    operator, _ = ws.tokens.create("operator", f"park-staff-{name.replace(' ', '-')}")
    since = datetime.now(UTC)
    correct = 0
    with httpx.Client(base_url=production.url, timeout=30) as client:
        answers = []
        for i in range(count):
            label, data = synth.render(i, seed=seed, scenario=scenario)
            answer = client.post(
                "/v1/predict", content=data, headers={"x-kennel-source": "cam-01"}
            ).json()
            answers.append((answer["prediction_id"], label))
            correct += answer["label"] == label
        version = answer["model"]["version"]
        for prediction_id, label in answers:  # park staff label the day's images later
            client.post(
                "/v1/feedback",
                json={"prediction_id": prediction_id, "label": label},
                headers={"authorization": f"Bearer {operator}"},
            )
    assert production.service is not None and production.service.predlog is not None
    production.service.predlog.flush()
    until = datetime.now(UTC)
    cycle = monitor_once(
        ws.monitor(),
        ws.actions(lines(say, "   "), actor="kennel-monitor"),
        environment="production",
        span=until - since,
        until=until,
    )
    m = cycle.result.metrics
    say(
        f"   {count} images to pets@{version}: accuracy {m.get('performance.accuracy', 0):.3f} "
        f"(estimated without labels {m.get('performance.estimated_accuracy', 0):.3f}), drift "
        f"{'YES' if m.get('drift.drifted') else 'no'}; alerts: "
        + (", ".join(a.rule for a in cycle.alerts.opened) or "none")
    )
    return _phase_summary(name, version, count, correct, cycle)


def _phase_summary(
    name: str, version: int, count: int, correct: int, cycle: Cycle
) -> dict[str, Any]:
    m = cycle.result.metrics
    drifted = [
        t["name"] for t in cycle.result.details.get("drift", {}).get("tests", []) if t["drifted"]
    ]
    return {
        "phase": name,
        "model_version": version,
        "images": count,
        "accuracy": round(m.get("performance.accuracy", correct / max(count, 1)), 4),
        "estimated_accuracy": round(m.get("performance.estimated_accuracy", 0.0), 4),
        "drift": bool(m.get("drift.drifted")),
        "drifted_tests": drifted,
        "alerts": [f"{a.rule} ({a.message})" for a in cycle.alerts.opened],
        "resolved": [a.rule for a in cycle.alerts.resolved],
        "actions": {str(k): v for k, v in cycle.actions.items()},
        "monitor_run": cycle.result.id,
    }


def _recovered(story: list[dict[str, Any]]) -> bool | None:
    """Did the retrained model win the night back (its accuracy alert resolved)? None when
    the story did not get that far."""
    phases = {p["phase"]: p for p in story}
    if "next night" not in phases:
        return None
    after = phases["next night"]
    return after["accuracy"] > phases["night"]["accuracy"] and "accuracy-drop" in after["resolved"]


def _story_html(summary: dict[str, Any]) -> str:
    phases = summary["phases"]
    return pages.render(
        "demo.html",
        s=summary,
        accuracy_series={
            "measured": [(i, p["accuracy"]) for i, p in enumerate(phases)],
            "estimated (no labels)": [(i, p["estimated_accuracy"]) for i, p in enumerate(phases)],
        },
        phase_rows=[
            [
                p["phase"],
                f"pets@{p['model_version']}",
                p["images"],
                f"{p['accuracy']:.3f}",
                f"{p['estimated_accuracy']:.3f}",
                ", ".join(p["drifted_tests"]) or "no",
                "; ".join(p["alerts"]) or "-",
                "; ".join(p["resolved"]) or "-",
                "; ".join(f"{k}: {v}" for a in p["actions"].values() for k, v in a.items()),
            ]
            for p in phases
        ],
    )
