"""``kennel batch-score`` and ``kennel batch-read``: offline predictions in a shared table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from kennel.cli.app import JsonOption, ProjectOption, model_ref, new_app, opened
from kennel.cli.render import console, emit_json
from kennel.package.wheel import build_wheel
from kennel.serve.runtime import Bundle
from kennel.stream import batch, rpc
from kennel.wiring import Workspace

export_app = new_app("Package a registered model for another deployment pattern.")


def _inputs(ws: Workspace, spec: str) -> Iterator[tuple[str, bytes | str]]:
    if spec.startswith("dataset:"):
        version = ws.catalog.resolve(spec.removeprefix("dataset:"))
        for row in ws.catalog.rows(version):
            yield row.uri, ws.content.get(row.sha256)
        return
    source = ws.source(spec)
    for entry, data in source.read(source.scan().entries):
        yield entry.uri, data


def batch_score(
    input_spec: Annotated[
        str,
        typer.Option(
            "--input", help="Folder, archive, manifest, fsspec URL, or dataset:NAME[@VERSION]."
        ),
    ],
    table: Annotated[str, typer.Option(help="Shared table to write predictions into.")],
    model: Annotated[
        str | None, typer.Option("--model", help="NAME@VERSION or NAME@ALIAS.")
    ] = None,
    env: Annotated[str | None, typer.Option("--env", help="Use the model ENV serves.")] = None,
    db: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default: the metadata DB).")
    ] = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Score inputs offline into a shared table (idempotent; schedule it with cron)."""
    with opened(project) as ws:
        predictor = ws.predictor(model_ref(ws, model, env))
        report = batch.score(
            predictor, _inputs(ws, input_spec), db_url=db or ws.project.metadata_url, table=table
        )
    if json_out:
        emit_json(report.as_dict())
    else:
        console.print(
            f"{report.inputs} inputs scored by {report.model}@{report.version} into "
            f"{report.table}: {report.inserted} new, {report.already_scored} already "
            f"there, {report.errors} unreadable ({report.images_per_second:.0f}/s)"
        )


def batch_read(
    uri: Annotated[str, typer.Argument(help="The input uri to look up.")],
    table: Annotated[str, typer.Option(help="The shared predictions table.")],
    db: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default: the metadata DB).")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """The example reader: stored predictions for one input (JSON)."""
    with opened(project) as ws:
        rows = batch.read(db or ws.project.metadata_url, table, uri)
    emit_json(rows)


def rpc_worker(
    model: Annotated[
        str | None, typer.Option("--model", help="NAME@VERSION or NAME@ALIAS.")
    ] = None,
    env: Annotated[str | None, typer.Option("--env", help="Use the model ENV serves.")] = None,
    url: Annotated[str, typer.Option(help="AMQP URL.")] = rpc.DEFAULT_URL,
    queue: Annotated[str, typer.Option(help="Request queue.")] = rpc.DEFAULT_QUEUE,
    project: ProjectOption = None,
) -> None:
    """Serve predictions over RabbitMQ RPC (request queue, reply-to, correlation id)."""
    with opened(project) as ws:
        predictor = ws.predictor(model_ref(ws, model, env))
    worker = rpc.RpcWorker(predictor, url=url, queue=queue)
    console.print(f"serving {predictor.name}@{predictor.version} on {queue} at {url}")
    try:
        worker.run()
    except KeyboardInterrupt:
        worker.stop()


@export_app.command("package")
def export_package(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION or NAME@ALIAS.")],
    out: Annotated[Path, typer.Option(help="Folder to write the wheel into.")] = Path("dist"),
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Build an installable wheel (pattern 1, embedded): predict() on onnxruntime+numpy+Pillow."""
    with opened(project) as ws:
        entry = ws.registry.resolve(ref)
        files = {name: ws.registry.read_file(entry, name) for name in entry.files}
    bundle = Bundle.from_files(files)  # every hash checked before anything is packaged
    wheel = build_wheel(files, bundle.meta, out)
    result = {"wheel": str(wheel), "model": bundle.name, "version": bundle.version}
    if json_out:
        emit_json(result)
    else:
        console.print(f"wrote {wheel} ({bundle.name}@{bundle.version}); pip install it")
