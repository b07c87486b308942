"""``kennel runs ...``: tracked training runs and tuning trials."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from kennel.cli.app import JsonOption, ProjectOption, new_app, opened
from kennel.cli.render import console, emit_json, table
from kennel.errors import NotFoundError

app = new_app("Tracked training runs and tuning trials.")


@app.command("list")
def list_(
    study: Annotated[str | None, typer.Option(help="Only the trials of this study.")] = None,
    kind: Annotated[Literal["trial", "final"] | None, typer.Option(help="trial or final.")] = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """List runs, oldest first."""
    with opened(project) as ws:
        runs = ws.tracker.runs(study=study, kind=kind)
    if study is not None and not runs and kind is None:  # a typo printed an empty table
        raise NotFoundError(f"no run belongs to study {study!r} (kennel runs list shows them)")
    if json_out:
        emit_json([r.as_dict() for r in runs])
        return
    table(
        "runs",
        ["id", "kind", "study/trial", "status", "val acc", "test acc", "seconds"],
        [
            [
                r.id[:12],
                r.kind,
                f"{r.study or '-'}/{r.trial_number if r.trial_number is not None else '-'}",
                r.status,
                _fmt(r.metrics.get("val_accuracy")),
                _fmt(r.metrics.get("test_accuracy")),
                f"{r.duration_s:.1f}" if r.duration_s else "-",
            ]
            for r in runs
        ],
    )


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="Run id, or its first digits (4 or more).")],
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """A run's params, metrics and per-epoch history."""
    with opened(project) as ws:
        run = ws.tracker.find(run_id)
        epochs = ws.tracker.epochs(run.id)
    if json_out:
        emit_json({**run.as_dict(), "epochs": epochs})
        return
    console.print(
        f"[bold]{run.id}[/bold] {run.kind} {run.status} on {run.dataset}@{run.dataset_version[:12]}"
    )
    console.print(f"params {run.params}", markup=False)
    table(
        None,
        ["epoch", *sorted({k for v in epochs.values() for k in v})],
        [
            [e, *(f"{v.get(k, 0):.4f}" for k in sorted({k for v in epochs.values() for k in v}))]
            for e, v in epochs.items()
        ],
    )
