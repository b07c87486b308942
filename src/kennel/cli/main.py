"""Entry point: ``kennel`` and its command groups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kennel import __version__
from kennel.cli import build, data, deploy, models, monitor, patterns, runs, video
from kennel.cli.app import JsonOption, ProjectOption, new_app, opened
from kennel.cli.render import console, emit_json, table
from kennel.config import init_project
from kennel.db.audit import entries, verify
from kennel.wiring import Workspace

app = new_app("kennel: MLOps for image classifiers, from the data lake to production.")
app.add_typer(data.app, name="data")
app.command()(build.train)
app.add_typer(build.pipeline_app, name="pipeline")
app.add_typer(models.app, name="models")
app.add_typer(models.lineage_app, name="lineage")
app.add_typer(runs.app, name="runs")
for command in (
    deploy.serve,
    deploy.stop,
    deploy.predict,
    deploy.deploy,
    deploy.approve,
    deploy.reject,
    deploy.release,
    deploy.rollback,
):
    app.command()(command)
app.add_typer(deploy.token_app, name="token")
app.command("batch-score")(patterns.batch_score)
app.command("batch-read")(patterns.batch_read)
app.command("rpc-worker")(patterns.rpc_worker)
app.command()(video.watch)
app.add_typer(patterns.export_app, name="export")
app.command()(patterns.publish)
app.command()(patterns.subscribe)
app.add_typer(patterns.bench_app, name="bench")
data.app.command("synth-video")(video.synth_video)
app.add_typer(monitor.monitor_app, name="monitor")
app.add_typer(monitor.alerts_app, name="alerts")
app.add_typer(monitor.analyze_app, name="analyze")
app.add_typer(monitor.telemetry_app, name="telemetry")
audit_app = new_app("The hash-chained audit trail of every state change.")
app.add_typer(audit_app, name="audit")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kennel {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """kennel: MLOps for image classifiers, from the data lake to production."""


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Project folder.")] = Path(),
    force: Annotated[bool, typer.Option(help="Overwrite an existing kennel.yaml.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Create kennel.yaml and .kennel/ (metadata DB and artifact store) in PATH."""
    project, created = init_project(path, force=force)
    ws = Workspace(project)
    try:
        ws.db  # noqa: B018 - opening the database creates and migrates it
    finally:
        ws.close()
    result = {
        "root": str(project.root),
        "created": created,
        "metadata_url": project.metadata_url,
        "artifacts_url": project.artifacts_url,
    }
    if json_out:
        emit_json(result)
    else:
        state = "created" if created else "already initialised; kept"
        console.print(f"{project.root / 'kennel.yaml'} {state}; metadata {project.metadata_url}")


@audit_app.command("verify")
def audit_verify(project: ProjectOption = None, json_out: JsonOption = False) -> None:
    """Check the audit chain and its anchor; exits 1 naming the first edited, missing or
    rewritten entry."""
    with opened(project) as ws, ws.db.session() as s:
        verdict = verify(s)
    if json_out:
        emit_json(
            {
                "ok": verdict.ok,
                "checked": verdict.checked,
                "anchored": verdict.anchored,
                "problem": verdict.problem,
            }
        )
    elif verdict.ok:
        console.print(
            f"audit log intact: {verdict.checked} entries verified, "
            f"{verdict.anchored} of them against the anchor"
        )
    else:
        typer.echo(f"error: audit log broken: {verdict.problem}", err=True)
    if not verdict.ok:
        raise typer.Exit(1)


@audit_app.command("log")
def audit_log(
    limit: Annotated[int, typer.Option(help="Newest entries to show.")] = 20,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show the newest audit entries."""
    with opened(project) as ws, ws.db.session() as s:
        rows = entries(s, limit)
    if json_out:
        emit_json([e.__dict__ for e in rows])
        return
    table(
        "audit log",
        ["seq", "at", "actor", "action", "subject", "details"],
        [
            [
                e.seq,
                f"{e.at:%Y-%m-%d %H:%M:%S}",
                e.actor,
                e.action,
                e.subject,
                json.dumps(e.details, default=str)[:60],
            ]
            for e in rows
        ],
    )


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo project.")] = Path(".kennel-demo"),
    count: Annotated[int, typer.Option(min=50, help="Day images to simulate.")] = 1500,
) -> None:
    """Run the whole lifecycle end to end on the embedded default (SQLite + a local folder)."""
    from kennel.demo import run_demo

    run_demo(out, count=count, say=console.print)


def main() -> None:
    app(prog_name="kennel")
