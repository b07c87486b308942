"""``kennel models ...`` and ``kennel lineage ...``: the registry from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kennel.cli.app import (
    PATH,
    ForceOption,
    JsonOption,
    ProjectOption,
    TokenOption,
    acting,
    new_app,
    note_option,
    opened,
)
from kennel.cli.render import console, emit_json, table
from kennel.display import shown
from kennel.errors import NotFoundError, did_you_mean

app = new_app("Registered model versions, aliases and their history.")
lineage_app = new_app("Trace anything back to its sources.")


@app.command("list")
def list_(
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """List registered model versions."""
    with opened(project) as ws:
        versions = ws.registry.versions(name)
        if name is not None and not versions:  # a typo printed an empty table
            names = ws.registry.store.names()
            raise NotFoundError(f"no model named {name!r}{did_you_mean(name, names)}")
    if json_out:
        emit_json([v.as_dict() for v in versions])
        return
    table(
        "models",
        ["ref", "accuracy", "gates", "aliases", "dataset version", "created"],
        [
            [
                v.ref,
                f"{v.metrics.get('accuracy', 0):.4f}",
                "pass" if v.gates_passed else "FAIL",
                ",".join(v.aliases) or "-",
                f"{v.dataset}@{(v.dataset_version or '-')[:12]}",
                f"{v.created_at:%Y-%m-%d %H:%M}",
            ]
            for v in versions
        ],
    )


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@ALIAS.")],
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show one model version: metrics, gates, release status, files and aliases."""
    with opened(project) as ws:
        model = ws.registry.resolve(ref)
        refusals = ws.releases().refusals(model)
    if json_out:
        emit_json({**model.as_dict(), "release_blockers": refusals})
        return
    console.print(f"[bold]{model.ref}[/bold] aliases: {', '.join(model.aliases) or '-'}")
    console.print(f"run {model.run_id}  data {model.dataset}@{model.dataset_version}")
    console.print(
        f"accuracy {model.metrics.get('accuracy', 0):.4f}  gates "
        f"{'passed' if model.gates_passed else 'FAILED: ' + '; '.join(model.gate_reasons)}",
        markup=False,
    )
    console.print(
        "release: " + ("may be released" if not refusals else "blocked: " + "; ".join(refusals)),
        markup=False,
    )
    for fname, digest in sorted(model.files.items()):
        console.print(f"  {fname}  sha256:{digest}")


@app.command()
def download(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION or NAME@ALIAS.")],
    dest: Annotated[Path, typer.Argument(help="Folder to write the bundle into.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write into a folder that is not empty, replacing its files of the same name.",
        ),
    ] = False,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Write a model's bundle to DEST, verifying every file's sha256 first (all or nothing).
    DEST must be new or empty, unless --force."""
    from kennel.fsutil import outside_state

    with opened(project) as ws:
        outside_state(dest, ws.project.state_dir, "DEST")
        model, files = ws.registry.download(ref, dest, overwrite=force)
    if json_out:
        emit_json({"model": model.ref, "files": [str(f) for f in files]})
    else:
        console.print(
            f"{model.ref}: {len(files)} files verified and written to {dest}", markup=False
        )


@app.command()
def alias(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION to point the alias at.")],
    name: Annotated[
        str, typer.Argument(help="Alias name, e.g. candidate (not champion or an environment's).")
    ],
    reason: Annotated[str, note_option("Why (kept in the history).")] = "set by hand",
    token: TokenOption = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Point an alias that no environment follows at a version (history keeps who, when, from
    where, why). Environments move only by deploy, release and rollback."""
    from kennel.deploy.policy import Move

    with opened(project) as ws:
        model = ws.registry.resolve(ref)
        event = ws.releases().gate.move(Move.SET, model, name, who=acting(ws, token), reason=reason)
    if json_out:
        emit_json(event.as_dict())
    else:
        console.print(
            f"{model.name}@{name}: {event.from_version or '-'} -> {event.to_version or '-'}"
        )


@app.command()
def history(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str | None, typer.Option("--alias", help="Only this alias.")] = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Every alias move of a model."""
    with opened(project) as ws:
        events = ws.registry.alias_history(name, alias_name)
        if not events and name not in (names := ws.registry.store.names()):
            raise NotFoundError(f"no model named {name!r}{did_you_mean(name, names)}")
        config = ws.project.config
        known = {e.alias for e in ws.registry.alias_history(name)} | {"champion"}
        known |= {env.alias for env in config.environments.values()}
        if not events and alias_name is not None and alias_name not in known:
            raise NotFoundError(
                f"{name} has no alias {alias_name!r}{did_you_mean(alias_name, known)}"
            )
    if json_out:
        emit_json([e.as_dict() for e in events])
        return
    table(
        f"{name} alias history",
        ["at", "alias", "from", "to", "actor", "reason"],
        [
            [
                f"{e.at:%Y-%m-%d %H:%M:%S}",
                e.alias,
                _or_dash(e.from_version),
                _or_dash(e.to_version),
                e.actor,
                e.reason,
            ]
            for e in events
        ],
    )


def _or_dash(version: int | None) -> str:
    """A version number, or "-" where there is none (an alias set for the first time)."""
    return "-" if version is None else str(version)


@lineage_app.command("model")
def lineage_model(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION or NAME@ALIAS.")],
    all_files: Annotated[bool, typer.Option("--all-files", help="List every source file.")] = False,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """model version -> run -> trials -> dataset version -> source files."""
    from kennel.pipeline.lineage import model_lineage

    with opened(project) as ws:
        out = model_lineage(
            ref,
            registry=ws.registry,
            tracker=ws.tracker,
            catalog=ws.catalog,
            files_limit=None if all_files else 20,
        )
    if json_out:
        emit_json(out)
        return
    m = out["model"]
    console.print(f"[bold]{m['ref']}[/bold] (aliases {', '.join(m['aliases']) or '-'})")
    _show_lineage(out)


def _show_lineage(out: dict[str, Any], indent: str = "") -> None:
    """The run -> study -> dataset versions -> source files part of a lineage, as a tree."""
    if "run" in out:
        r = out["run"]
        console.print(
            f"{indent}└─ run {r['id']} {r['kind']} {r['status']} {r['params'].get('arch')} "
            f"epochs={len(r['epochs'])} commit={r['git_commit'] or '-'}",
            markup=False,
        )
    if "study" in out:
        study = out["study"]
        console.print(f"{indent}   └─ study {study['id']}: {len(study['trials'])} trials")
    if "dataset" in out:
        d = out["dataset"]
        for depth, v in enumerate(d["ancestry"]):
            console.print(
                f"{indent}   {'  ' * depth}└─ dataset {v['ref']} ({v['rows']} rows) "
                f"from {v['source']}",
                markup=False,
            )
        files = d["source_files"]
        more = len(files) < d["training_files"]
        console.print(
            f"{indent}      {d['training_files']} training files"
            + (f", the first {len(files)} (--all-files lists every one):" if more else ":"),
            markup=False,
        )
        for uri in files:
            console.print(f"{indent}        {shown(uri)}", markup=False)


@lineage_app.command("prediction")
def lineage_prediction(
    prediction_id: Annotated[str, typer.Argument(help="A logged prediction id.")],
    all_files: Annotated[bool, typer.Option("--all-files", help="List every source file.")] = False,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """prediction -> model version -> run -> dataset version -> source files."""
    from kennel.govern.lineage import prediction_lineage

    with opened(project) as ws:
        out = prediction_lineage(
            prediction_id,
            db=ws.db,
            registry=ws.registry,
            tracker=ws.tracker,
            catalog=ws.catalog,
            files_limit=None if all_files else 20,
        )
    if json_out:
        emit_json(out)
        return
    p = out["prediction"]
    truth = out["feedback"]["label"] if out["feedback"] else "no feedback yet"
    console.print(
        f"prediction {p['id']} {p['at']} {p['environment']} from {p['source']}: "
        f"{p['label']} ({p['confidence']:.3f}); true label: {truth}; input sha256 "
        f"{p['input_sha256'] or '-'}",
        markup=False,
    )
    console.print(f"└─ served by {p['model']}", markup=False)
    _show_lineage(out, indent="   ")


@app.command("compliance")
def compliance_report(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION or NAME@ALIAS.")],
    out: Annotated[
        str | None, typer.Option(metavar=PATH, help="HTML file to write (or a folder for it).")
    ] = None,
    force: ForceOption = False,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Compliance report: data, parameters, metrics, gates, approvals, releases, incidents."""
    from kennel.fsutil import outside_state, page_target, write_text_atomic
    from kennel.govern.compliance import compliance
    from kennel.govern.compliance import render as render_compliance

    with opened(project) as ws:
        report = compliance(
            ref, db=ws.db, registry=ws.registry, tracker=ws.tracker, catalog=ws.catalog
        )
        default = f"compliance-{report['model']['ref'].replace('@', '-')}.html"
        target = page_target(out or default, default, force=force)
        outside_state(target, ws.project.state_dir)
    write_text_atomic(target, render_compliance(report))
    if json_out:
        emit_json({**report, "html": str(target)})
    else:
        console.print(f"wrote {target}", markup=False)
