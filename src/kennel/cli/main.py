"""Entry point: ``kennel`` and its command groups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kennel import __version__
from kennel.cli import (
    build,
    dashboard,
    data,
    deploy,
    export,
    models,
    monitor,
    patterns,
    runs,
    telemetry,
    tune,
    video,
)
from kennel.cli.app import (
    BUILD,
    DATA,
    DEPLOY,
    MAX_NUMBER,
    MONITOR,
    PATTERNS,
    PROJECT,
    JsonOption,
    ProjectOption,
    TokenOption,
    acting,
    new_app,
    opened,
    say,
)
from kennel.cli.render import console, emit_json, table
from kennel.errors import AuthError

app = new_app("kennel: MLOps for image classifiers, from the data lake to production.")
app.add_typer(data.app, name="data", rich_help_panel=DATA)
data.app.command("synth-video")(video.synth_video)
app.command(rich_help_panel=BUILD)(build.train)
app.add_typer(build.pipeline_app, name="pipeline", rich_help_panel=BUILD)
app.add_typer(tune.app, name="tune", rich_help_panel=BUILD)
app.add_typer(runs.app, name="runs", rich_help_panel=BUILD)
app.add_typer(models.app, name="models", rich_help_panel=BUILD)
app.add_typer(models.lineage_app, name="lineage", rich_help_panel=BUILD)
for command in (
    deploy.deploy,
    deploy.approve,
    deploy.reject,
    deploy.release,
    deploy.rollback,
    deploy.serve,
    deploy.stop,
    deploy.predict,
):
    app.command(rich_help_panel=DEPLOY)(command)
app.add_typer(deploy.token_app, name="token", rich_help_panel=DEPLOY)
app.add_typer(monitor.monitor_app, name="monitor", rich_help_panel=MONITOR)
app.add_typer(monitor.alerts_app, name="alerts", rich_help_panel=MONITOR)
app.add_typer(monitor.analyze_app, name="analyze", rich_help_panel=MONITOR)
app.add_typer(telemetry.telemetry_app, name="telemetry", rich_help_panel=MONITOR)
audit_app = new_app("The hash-chained audit trail of every state change.")
app.add_typer(audit_app, name="audit", rich_help_panel=MONITOR)
app.command(rich_help_panel=PATTERNS)(video.watch)
app.command("batch-score", rich_help_panel=PATTERNS)(patterns.batch_score)
app.command("batch-read", rich_help_panel=PATTERNS)(patterns.batch_read)
app.command("rpc-worker", rich_help_panel=PATTERNS)(patterns.rpc_worker)
app.command(rich_help_panel=PATTERNS)(patterns.publish)
app.command(rich_help_panel=PATTERNS)(patterns.subscribe)
app.add_typer(export.export_app, name="export", rich_help_panel=PATTERNS)
app.add_typer(patterns.bench_app, name="bench", rich_help_panel=PATTERNS)


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


@app.command(rich_help_panel=PROJECT)
def init(
    path: Annotated[Path, typer.Argument(help="Project folder.")] = Path(),
    force: Annotated[bool, typer.Option(help="Overwrite an existing kennel.yaml.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Create kennel.yaml and .kennel/ (metadata DB and artifact store) in PATH."""
    from kennel.config import init_project
    from kennel.wiring import Workspace

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
        console.print(
            f"{project.root / 'kennel.yaml'} {state}; metadata {project.metadata_url}", markup=False
        )


@audit_app.command("verify")
def audit_verify(
    allow_unanchored: Annotated[
        bool, typer.Option(help="Accept a log with no anchor at all (written before anchoring).")
    ] = False,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Check the audit chain and its anchor; exits 1 naming the first edited, missing or
    rewritten entry."""
    from kennel.db.audit import verify

    with opened(project) as ws, ws.db.session() as s:
        verdict = verify(s, allow_unanchored=allow_unanchored)
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
        say(f"audit log broken: {verdict.problem}")
    if not verdict.ok:
        raise typer.Exit(1)


@audit_app.command("anchor")
def audit_anchor(
    seq: Annotated[int, typer.Argument(min=1, max=MAX_NUMBER, help="The entry to anchor.")],
    token: TokenOption = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Anchor an entry whose anchor write failed (an admin's act, after checking the entry:
    `audit verify` names it, and cannot tell it from a row slipped into the database). The
    chain up to it must verify; the act is itself an audited entry."""
    from kennel.db.audit_repair import anchor_entry

    with opened(project) as ws:
        who = acting(ws, token)
        if not who.may("audit"):
            raise AuthError(f"role {who.role!r} may not anchor audit entries; it takes admin")
        with ws.db.session() as s:
            digest = anchor_entry(s, seq, actor=who.name)
    if json_out:
        emit_json({"seq": seq, "hash": digest})
    else:
        console.print(f"entry {seq} anchored ({digest[:12]})")


@audit_app.command("log")
def audit_log(
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Newest entries to show.")] = 20,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show the newest audit entries."""
    from kennel.db.audit import entries

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


@app.command(rich_help_panel=PROJECT)
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo project.")] = Path(".kennel-demo"),
    count: Annotated[
        # fewer: the first model, trained on too few, fails its quality gates at step 4
        int, typer.Option(min=800, max=1_000_000, help="Day images to simulate.")
    ] = 1500,
) -> None:
    """Run the whole lifecycle end to end on the embedded default (SQLite + a local folder)."""
    from kennel.demo import run_demo
    from kennel.progress import lines

    summary = run_demo(out, count=count, progress=lines(console.print))
    table(
        "the pet park, monitored",
        ["phase", "model", "accuracy", "estimated", "drift", "alerts opened", "resolved"],
        [
            [
                p["phase"],
                f"pets@{p['model_version']}",
                f"{p['accuracy']:.3f}",
                f"{p['estimated_accuracy']:.3f}",
                ", ".join(p["drifted_tests"]) or "no",
                "; ".join(a.split(" (")[0] for a in p["alerts"]) or "-",
                "; ".join(p["resolved"]) or "-",
            ]
            for p in summary["phases"]
        ],
    )
    if summary["recovered"] is not None:
        won = "recovered the night" if summary["recovered"] else "did NOT recover the night"
        console.print(f"the retrained model {won}")
    report, project = escape(str(summary["report"])), escape(str(summary["project"]))
    console.print(
        f"[bold]done[/bold] in {summary['wall_s']}s; the story: {report}; explore "
        f"with e.g. `kennel alerts list -C {project}`"
    )
    console.print(f"the dashboard: kennel ui -C {summary['project']}", markup=False)
    if not summary["ok"]:
        from kennel.errors import KennelError

        raise KennelError("the demo's own checks failed (see the story above)")


app.command("ui", rich_help_panel=PROJECT)(dashboard.ui)


def main() -> None:
    """``kennel``: like ``app()``, but a usage error on the top-level options too is one line
    (typer would draw a box for those; the groups below already answer in one line)."""
    import sys

    from kennel.cli.app import ClickException, NoArgsIsHelpError, usage_line
    from kennel.cli.app import UsageError as Usage

    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="kennel", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `kennel` alone: the help, printed already, and no error
        code = exc.exit_code
    except Usage as exc:
        say(usage_line(exc), prefix="")
        code = 2
    except ClickException as exc:
        say(exc.format_message(), prefix="Error: ")  # as exc.show() would, but scrubbed
        code = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
