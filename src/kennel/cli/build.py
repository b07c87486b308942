"""``kennel train``, ``kennel pipeline run``: shells over kennel.pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from kennel.cli.app import JsonOption, ProjectOption, interruptible, new_app, opened, say
from kennel.cli.render import console, emit_json, reporting, table

if TYPE_CHECKING:  # PyTorch comes with these: imported when a command runs
    from kennel.pipeline.build import BuildOptions, BuildResult
    from kennel.pipeline.options import Resume as ResumeMode

RESUME_HINT = "kennel train --resume continues the run from its last checkpoint"
PIPELINE_HINT = (
    "run the same kennel pipeline run again: finished steps are skipped and the interrupted "
    "training resumes from its last checkpoint (a linear probe is fitted again)"
)
pipeline_app = new_app("Run the build pipeline from kennel.yaml, skipping unchanged steps.")

Preset = Annotated[
    Literal["quick", "best"] | None,
    typer.Option(
        help="A recipe for train's settings: quick (a small CNN, seconds) or best (frozen "
        "ImageNet EfficientNet-Lite2 features + a linear classifier, flip-averaged; see the "
        "README's Benchmarks). Replaces kennel.yaml's values for the keys it sets."
    ),
]
Arch = Annotated[
    Literal["small_cnn", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"] | None,
    typer.Option(help="Model architecture (default: kennel.yaml's train.arch)."),
]
Epochs = Annotated[
    int | None, typer.Option(min=1, max=10_000, help="Epochs for the final training run.")
]
Trials = Annotated[
    int | None, typer.Option(min=1, max=10_000, help="Tuning trials (1 = no search).")
]
Search = Annotated[
    Literal["grid", "random", "tpe"] | None,
    typer.Option("--search", help="Search method (default: kennel.yaml's)."),
]
Budget = Annotated[
    float | None,
    typer.Option(min=0.01, max=10_080, help="Search budget in minutes (more than 0)."),
]
Size = Annotated[
    int | None, typer.Option(min=32, max=1024, help="Input size in pixels (a multiple of 32).")
]
InitFrom = Annotated[str | None, typer.Option(help="Warm start from a registered NAME@VERSION.")]
StudyOption = Annotated[
    str | None,
    typer.Option("--study", help="Train the best trial of this finished shared study."),
]
Resume = Annotated[
    bool,
    typer.Option(
        help="Continue the last interrupted run from its checkpoint (a linear probe is fitted "
        "again), with the settings it started with (no --epochs, --arch, ... beside it); "
        "an error when there is none."
    ),
]


def _options(
    arch: str | None,
    epochs: int | None,
    trials: int | None,
    search: str | None,
    budget: float | None,
    size: int | None,
    init_from: str | None,
    resume: ResumeMode,
    study: str | None = None,
    preset: str | None = None,
) -> BuildOptions:
    from kennel.pipeline.build import BuildOptions

    if trials == 1 and (budget is not None or search is not None):
        given = "--budget-minutes" if budget is not None else "--search"
        raise typer.BadParameter(
            f"1 trains one configuration, with no search, so {given} would not be used: "
            "drop one of them",
            param_hint="--trials",
        )
    return BuildOptions(
        preset=preset,
        arch=arch,
        epochs=epochs,
        trials=trials,
        method=search,
        budget_minutes=budget,
        image_size=size,
        init_from=init_from,
        resume=resume,
        study=study,
    )


def _print(result: BuildResult) -> None:
    e = result.evaluation
    table(
        f"{result.model.ref} on the test split (accuracy {e.accuracy:.4f})",
        ["class", "precision", "recall", "f1", "support"],
        [
            [c, f"{m.precision:.4f}", f"{m.recall:.4f}", f"{m.f1:.4f}", m.support]
            for c, m in e.per_class.items()
        ],
    )
    gates = "passed" if result.gates.passed else "FAILED: " + "; ".join(result.gates.reasons)
    champion = f"; {result.model.name}@champion now" if result.champion else ""
    console.print(
        f"gates {gates}; parity {'passed' if result.parity.passed else 'FAILED'}; "
        f"run {result.run_id}; {result.seconds:.0f}s{champion}",
        markup=False,
    )


@pipeline_app.command("run")
def pipeline_run(
    dataset: Annotated[
        str | None, typer.Option(help="Dataset (default: pipeline.dataset).")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Ingest this first (default: pipeline.source).")
    ] = None,
    preset: Preset = None,
    arch: Arch = None,
    epochs: Epochs = None,
    trials: Trials = None,
    search: Search = None,
    budget_minutes: Budget = None,
    image_size: Size = None,
    force: Annotated[bool, typer.Option(help="Re-run steps whose inputs are unchanged.")] = False,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """ingest -> train (+ search) -> evaluate -> package -> register, from kennel.yaml."""
    with interruptible(PIPELINE_HINT), opened(project) as ws:
        cfg = ws.project.config.pipeline
        spec = source or cfg.source
        from kennel.db.pipeline import PipelineStepStore
        from kennel.pipeline.flow import PipelineRunner

        runner = PipelineRunner(
            config=ws.project.config,
            steps=PipelineStepStore(ws.db),
            ingestor=ws.ingestor(),
            builder=ws.builder(),
            catalog=ws.catalog,
            registry=ws.registry,
        )
        with reporting(json_out) as progress:
            result = runner.run(
                dataset=dataset or cfg.dataset,
                source=ws.source(spec) if spec else None,
                options=_options(
                    arch,
                    epochs,
                    trials,
                    search,
                    budget_minutes,
                    image_size,
                    None,
                    "same",  # only the interrupted run of this same build (not any other)
                    preset=preset,
                ),
                force=force,
                progress=progress,
            )
    if json_out:
        emit_json(result.as_dict())
    else:
        console.print(f"pipeline done: {result.model} from {result.dataset_version}", markup=False)
    _gated(result.model, result.steps[-1].output.gates_passed)


def train(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset NAME or NAME@VERSION.")],
    preset: Preset = None,
    arch: Arch = None,
    epochs: Epochs = None,
    trials: Trials = None,
    search: Search = None,
    budget_minutes: Budget = None,
    image_size: Size = None,
    init_from: InitFrom = None,
    resume: Resume = False,
    study: StudyOption = None,
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Train data-parallel on N processes of this machine (torchrun; with GPUs, "
            "one each). Several machines: run torchrun yourself (docs/operations.md).",
        ),
    ] = 1,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Train (and tune) on a dataset version, test, package to ONNX and register the model."""
    from kennel.train.parallel import (
        check_ranks,
        choose_device,
        joined,
        launched_by_torchrun,
    )

    if resume:
        _resume_alone(
            preset=preset,
            arch=arch,
            epochs=epochs,
            trials=trials,
            search=search,
            budget_minutes=budget_minutes,
            image_size=image_size,
            init_from=init_from,
            study=study,
        )
    shaping = (("--arch", arch), ("--image-size", image_size), ("--preset", preset))
    if init_from is not None and any(v is not None for _, v in shaping):
        given = [n for n, v in shaping if v is not None]  # a preset names its own architecture
        raise typer.BadParameter(
            f"a warm start keeps the architecture and image size of {init_from}; it cannot "
            f"take {', '.join(given)}",
            param_hint="--init-from",
        )
    options = _options(
        arch,
        epochs,
        trials,
        search,
        budget_minutes,
        image_size,
        init_from,
        "newest" if resume else "off",
        study,
        preset,
    )
    if nproc > 1:
        if launched_by_torchrun():
            raise typer.BadParameter("torchrun already started this rank", param_hint="--nproc")
        from kennel.train.launch import launch

        with opened(project) as ws:  # bad input is one line here, not N ranks' tracebacks
            config = options.apply(ws.project.config.train)
            check_ranks(nproc, choose_device(config.device))
            ws.builder().check(dataset, options, distributed=True)
            root = str(ws.project.root)
        argv = ["train", "--dataset", dataset, "-C", root, *_passed_on(options, json_out)]
        with interruptible(RESUME_HINT):  # passed on to torchrun, which stops the ranks
            code = launch(nproc, argv)
        raise typer.Exit(code)
    with (
        interruptible(RESUME_HINT),
        opened(project) as ws,
        joined(ws.project.config.train.device) as parallel,
    ):
        builder = ws.builder()
        if not parallel.leader:  # a rank of a data-parallel run: rank 0 reports
            builder.follow(dataset, options, parallel)
            return
        with reporting(json_out) as progress:
            result = builder.build(dataset, options, progress, parallel=parallel)
    if json_out:
        emit_json(result.as_dict())
    else:
        _print(result)
    _gated(result.model.ref, result.gates.passed, result.gates.reasons)


def _gated(model: str, passed: bool, reasons: Sequence[str] = ()) -> None:
    """Exit 1 after the result when the model failed its quality gates: it is registered (to
    look into), yet no environment will take it, so a script's next step must not run."""
    if not passed:
        why = "; ".join(reasons) if reasons else f"kennel models show {model}"
        say(f"{model} failed its quality gates ({why}): registered, but never to be released")
        raise typer.Exit(1)


def _resume_alone(**given: object) -> None:
    """``--resume`` continues a run with the settings it started with: an option that would
    change them is refused rather than silently ignored."""
    names = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None]
    if names:
        raise typer.BadParameter(
            f"continues the run with its own settings; it cannot take {', '.join(names)} "
            "(start a new run to change them)",
            param_hint="--resume",
        )


def _passed_on(options: BuildOptions, json_out: bool) -> list[str]:
    """``kennel train``'s options as each torchrun rank is given them."""
    flags = {
        "--preset": options.preset,
        "--arch": options.arch,
        "--epochs": options.epochs,
        "--trials": options.trials,
        "--search": options.method,
        "--budget-minutes": options.budget_minutes,
        "--image-size": options.image_size,
        "--init-from": options.init_from,
        "--study": options.study,
    }
    argv = [str(a) for flag, value in flags.items() if value is not None for a in (flag, value)]
    return argv + ["--resume"] * (options.resume == "newest") + ["--json"] * json_out
