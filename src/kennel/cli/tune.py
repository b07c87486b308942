"""``kennel tune start|worker|status``: a hyperparameter search shared by workers on many
machines, shells over kennel.pipeline.tuning. Each command reaches the study store first, so
that an unreachable or unshareable store is one line naming it."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Annotated

import typer

from kennel.cli.app import JsonOption, ProjectOption, new_app, opened
from kennel.cli.build import Search
from kennel.cli.render import console, emit_json, reporting, table

if TYPE_CHECKING:
    from kennel.train.study_records import StudyStatus

app = new_app(
    "A hyperparameter search shared by workers on many machines (PostgreSQL metadata store)."
)

StudyName = Annotated[str, typer.Option("--study", "-s", help="The shared study's name.")]


def _print(status: StudyStatus) -> None:
    spec = status.spec
    table(
        f"study {spec.name}: {spec.dataset}@{spec.dataset_version[:12]}, "
        f"{spec.config.search.method} over {', '.join(sorted(spec.config.search.space))}, "
        f"{spec.trials} trials",
        ["trial", "status", "val acc", "params", "retry of", "worker", "run", "seconds"],
        [
            [
                t.number,
                t.status,
                f"{t.value:.4f}" if t.value is not None else "-",
                t.params,
                t.retry_of if t.retry_of is not None else "-",
                t.worker or "-",
                (t.run_id or "-")[:12],
                t.seconds if t.seconds is not None else "-",
            ]
            for t in status.trials
        ],
    )
    best = status.best
    state = "finished" if status.finished else f"{status.count('waiting', 'running')} left"
    console.print(
        f"{state}; best: trial {best.number} val_accuracy={best.value:.4f} {best.params}"
        if best is not None and best.value is not None
        else f"{state}; no trial completed yet",
        markup=False,
    )


@app.command()
def start(
    dataset: Annotated[str, typer.Argument(help="Dataset NAME or NAME@VERSION.")],
    trials: Annotated[int, typer.Option(min=1, help="Trials the study runs in all.")] = 8,
    study: Annotated[
        str | None, typer.Option("--study", "-s", help="Name (default: DATASET-VERSION).")
    ] = None,
    search: Search = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Create a shared study with TRIALS queued (again: unchanged, or topped up)."""
    from kennel.pipeline.options import BuildOptions

    with opened(project) as ws:
        ws.studies.probe()
        status = ws.tuner().start(
            dataset, trials=trials, name=study, options=BuildOptions(method=search)
        )
    if json_out:
        emit_json(status.as_dict())
        return
    _print(status)
    console.print(
        f"join it from any machine with this kennel.yaml: kennel tune worker --study "
        f"{shlex.quote(status.spec.name)}",
        markup=False,
    )


@app.command()
def worker(
    study: StudyName,
    trials_per_worker: Annotated[
        int | None,
        typer.Option(min=1, max=10_000, help="Leave after this many trials (default: none)."),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=0, max=1024, help="Training threads (default: train.threads; 0 = all cores)."
        ),
    ] = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Run the study's queued trials until it is finished; a trial another worker left
    (its heartbeat stopped) is failed and run again."""
    with opened(project) as ws:
        ws.studies.spec(study)  # unknown or half-created: one line, before any data is read
        with reporting(json_out) as progress:
            ran = ws.tuner().work(
                study, limit=trials_per_worker, threads=threads, progress=progress
            )
        status = ws.studies.status(study)
    if json_out:
        emit_json({"ran": ran, **status.as_dict()})
        return
    console.print(f"this worker ran {ran} trial(s)", markup=False)
    _print(status)


@app.command()
def status(study: StudyName, project: ProjectOption = None, json_out: JsonOption = False) -> None:
    """The study's trials: status, accuracy, parameters, retries, workers and runs."""
    with opened(project) as ws:
        result = ws.studies.status(study)
    if json_out:
        emit_json(result.as_dict())
    else:
        _print(result)
