"""``kennel serve | stop | predict | deploy | approve | reject | release | rollback | token``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kennel.cli.app import (
    JsonOption,
    ProjectOption,
    TokenOption,
    acting,
    login_name,
    model_ref,
    new_app,
    note_option,
    opened,
    say,
)
from kennel.cli.render import console, dumps, emit_json, progress_bar, reporting, table
from kennel.display import shown
from kennel.errors import AuthError, NotFoundError, SourceError

if TYPE_CHECKING:  # imported where used, so that `kennel --help` starts at once
    from kennel.wiring import Workspace

token_app = new_app("Role-bearing API tokens (viewer, operator, qa, admin).")

Env = Annotated[str, typer.Option("--env", help="Environment from kennel.yaml.")]
Note = Annotated[str, note_option("Why (kept in the audit trail).", "--note")]


def serve(
    env: Env = "production",
    host: Annotated[
        str | None, typer.Option(help="Bind address (default: the environment's, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port (default: the environment's).")
    ] = None,
    drain: Annotated[
        float, typer.Option(min=0, max=3600, help="Seconds readiness is 503 before stopping.")
    ] = 2.0,
    project: ProjectOption = None,
) -> None:
    """Serve the model that ENV's alias points at (follows the alias as it moves)."""
    from kennel.serve.server import listening
    from kennel.serve.server import serve as run
    from kennel.wiring import Workspace

    ws = Workspace.load(project)
    try:
        target = ws.project.config.environment(env)
        host, port = host or target.host, port or target.port
        sock = listening(host, port)  # a busy port is told before the banner, in one line
        service = ws.service(env)
        shown = f"[{host}]" if ":" in host else host
        name = ws.project.config.model.name
        console.print(
            f"serving {name}@{target.alias} for {env} on http://{shown}:{port}", markup=False
        )
        run(service, sock, drain_s=drain, host=host)
    finally:
        ws.close()


def stop(env: Env = "production", project: ProjectOption = None) -> None:
    """Stop a service that `kennel deploy` started in the background."""
    from kennel.deploy import environments
    from kennel.wiring import Workspace

    ws = Workspace.load(project)
    target = ws.project.config.environment(env)  # an unknown name: an error, "did you mean"
    on_record = environments.recorded(ws.project.state_dir, env)
    stopped = environments.stop(ws.project.state_dir, env)
    said = "stopped" if stopped else "no background service was running"
    if on_record and not stopped:  # killed (kill -9, a reboot): what is left of it goes
        said += " (the one started last had ended without being stopped; its record is removed)"
    if not stopped and environments.is_live(target.url):
        # one started otherwise (kennel serve in a terminal, a unit, a container)
        said += f", but a service answers at {target.url}: stop it where it was started"
    console.print(f"{env}: {said}", markup=False)


def _default_model(ws: Workspace) -> str:
    """What ``kennel predict`` uses without --model/--env: what production (``release.to``)
    serves, else the champion; only ever a version that passed its quality gates."""
    name = ws.project.config.model.name
    production = ws.project.config.environments.get(ws.project.config.release.to)
    for alias in ([production.alias] if production else []) + ["champion"]:
        try:
            chosen = ws.registry.resolve(f"{name}@{alias}")
        except NotFoundError:
            continue
        if chosen.gates_passed:
            return chosen.ref
    if not ws.registry.versions(name):
        raise NotFoundError(f"no model {name!r} is registered yet: train one with kennel train")
    raise NotFoundError(
        f"no version of {name!r} has passed its quality gates yet: name one with "
        f"--model {name}@VERSION to use it anyway"
    )


def _image_files(inputs: list[Path]) -> list[Path]:
    from kennel.ingest.sources import is_image_name

    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and is_image_name(p.name))
            if not found:
                raise SourceError(f"{item}: no image files in this folder")
            files += found
        elif item.is_file():
            files.append(item)
        elif item.exists() or item.is_symlink():  # a FIFO, a device, a broken link
            raise SourceError(f"{item} is not a regular file or a folder")
        else:
            raise SourceError(f"{item} does not exist")
    return files


def predict(
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="NAME@VERSION or NAME@ALIAS (default: what production serves, else the champion).",
        ),
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", help="Use the model ENV's alias serves.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1024, help="Images per batch.")] = 32,
    project: ProjectOption = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object per image, as each batch is done.")
    ] = False,
) -> None:
    """Classify images in-process with the Predictor the services use.

    Folders are scored in batches and results stream out as they come (one JSON object per
    image with --json); exits 1 when any input was rejected.
    """
    from kennel.imaging import ImageRejected

    files = _image_files(inputs)
    with opened(project) as ws:
        # a version named outright is scored even if it failed its gates (its results stay
        # on this screen), with a warning
        ungated = model is not None
        ref = model_ref(ws, model, env, ungated=ungated) if model or env else _default_model(ws)
        chosen = ws.registry.resolve(ref)
        if not chosen.gates_passed:
            say(f"{ref} failed its quality gates: {'; '.join(chosen.gate_reasons)}",
                prefix="warning: ")  # fmt: skip
        predictor = ws.predictor(ref)
    if not json_out:
        console.print(f"{predictor.name}@{predictor.version}: {len(files)} images", markup=False)
    limit = ws.project.config.serve.max_upload_bytes  # what the service would take
    counts: dict[str, int] = {}
    rejected = 0
    with progress_bar("scoring", enabled=len(files) > batch_size) as update:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            prepared, results = [], []
            for path in chunk:
                try:
                    prepared.append(predictor.prepare(_read_capped(path, limit)))
                    results.append({"file": str(path)})
                except (ImageRejected, OSError) as exc:
                    results.append(
                        {"file": str(path), "error": "invalid_image", "detail": str(exc)}
                    )
            scored = iter(predictor.predict_prepared(prepared) if prepared else [])
            for result in results:
                if "error" in result:
                    rejected += 1
                else:
                    answer = next(scored).as_dict()
                    # in-process predictions are not logged: an id would trace to nothing
                    answer.pop("prediction_id", None)
                    result.update(answer)
                    counts[result["label"]] = counts.get(result["label"], 0) + 1
                _emit_prediction(result, json_out)
            update(start + len(chunk), len(files))
    if not json_out:
        summary = ", ".join(f"{label} {n}" for label, n in sorted(counts.items()))
        console.print(
            f"{len(files)} images: {summary or 'none scored'}; {rejected} rejected", markup=False
        )
    if rejected:
        raise typer.Exit(1)


def _read_capped(path: Path, limit: int) -> bytes:
    """The file's bytes, or ImageRejected when it holds more than ``limit`` (never read)."""
    from kennel.imaging import ImageRejected

    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ImageRejected(f"file too large: over {limit} bytes (serve.max_upload_bytes)")
    return data


def _emit_prediction(result: dict[str, Any], json_out: bool) -> None:
    if json_out:
        typer.echo(dumps(result))
    elif "error" in result:
        typer.echo(f"{shown(result['file'])}\trejected: {shown(result['detail'])}", err=True)
    else:
        no_pet = "\tno pet" if result.get("pet") is False else ""
        file, label = shown(result["file"]), shown(result["label"])
        typer.echo(f"{file}\t{label}\t{result['confidence']:.3f}{no_pet}")


def deploy(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION to deploy.")],
    to: Annotated[str, typer.Option("--to", help="Environment.")] = "staging",
    token: TokenOption = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Move ENV's alias to the model, start/refresh its service, run the application test."""
    with opened(project) as ws, reporting(json_out) as progress:
        result = ws.releases().deploy(ref, to, who=acting(ws, token), progress=progress)
    c = result.certification
    if json_out:
        emit_json(result.as_dict())
        if not c.passed:  # a CI step that keeps the JSON must still go red
            raise typer.Exit(1)
        return
    console.print(
        f"{result.model} in {to}: {c.images} images, {c.label_mismatches} mismatches, "
        f"p50 {c.p50_ms:.1f} ms, p99 {c.p99_ms:.1f} ms, {c.throughput:.1f} img/s",
        markup=False,
    )
    if not c.passed:
        raise typer.Exit(1)


def _decide(
    decision: str, ref: str, note: str, token: str | None, project: Path | None, json_out: bool
) -> None:
    with opened(project) as ws:
        releases = ws.releases()
        row = releases.decide(ref, decision, who=acting(ws, token), note=note)
        model = f"{row.model}@{row.version}"
        served = releases.serving(ws.registry.resolve(model)) if decision == "rejected" else []
    out = {"model": model, "decision": row.decision, "actor": row.actor, "note": row.note}
    if json_out:
        emit_json({**out, "served_in": served})
    else:
        console.print(f"{model} {decision} by {row.actor}: {note}", markup=False)
    if served:
        say(releases.still_served(model, served), prefix="warning: ")


def approve(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION.")],
    note: Note = "",
    token: TokenOption = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """QA approval of a certified version (needs a qa or admin token)."""
    _decide("approved", ref, note, token, project, json_out)


def reject(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION.")],
    note: Note = "",
    token: TokenOption = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """QA rejection (needs a qa or admin token); a rejected version cannot be released."""
    _decide("rejected", ref, note, token, project, json_out)


def release(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION.")],
    to: Annotated[
        str | None, typer.Option("--to", help="Environment (default: release.to, production).")
    ] = None,
    reason: Annotated[str, note_option("Why (kept in the alias history).")] = "release",
    token: TokenOption = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Release a certified (and, in delivery mode, approved) version to ENV."""
    with opened(project) as ws:
        to = to or ws.project.config.release.to
        event = ws.releases().release(ref, to, who=acting(ws, token), reason=reason)
    if json_out:
        emit_json(event.as_dict())
    else:
        console.print(
            f"{event.name}@{event.alias}: {event.from_version or '-'} -> {event.to_version or '-'}"
        )


def rollback(
    env: Annotated[
        str | None, typer.Option("--env", help="Environment (default: release.to, production).")
    ] = None,
    reason: Annotated[str, note_option("Why (kept in the alias history).")] = "by request",
    seen: Annotated[
        int | None,
        typer.Option(
            "--from",
            min=1,
            max=2**31 - 1,
            help="Only if ENV serves this version now (the one you decided to roll back).",
        ),
    ] = None,
    token: TokenOption = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Point ENV back at the version it served before the last release."""
    with opened(project) as ws:
        env = env or ws.project.config.release.to
        event = ws.releases().rollback(env, who=acting(ws, token), reason=reason, seen=seen)
    if json_out:
        emit_json(event.as_dict())
    else:
        console.print(
            f"{event.name}@{event.alias}: {event.from_version or '-'} -> {event.to_version or '-'}"
        )


def _token_manager(ws: Workspace, token: str | None) -> str:
    """Who manages tokens: an admin. Until the project has an admin token anyone with the
    project may (so a new project can start); creating one locks token management."""
    if not any(r["role"] == "admin" and not r["revoked"] for r in ws.tokens.all()):
        return f"bootstrap:{login_name()}"
    who = acting(ws, token)
    if not who.may("tokens"):
        raise AuthError(f"role {who.role!r} may not manage tokens; it takes admin")
    return who.name


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="viewer, operator, qa or admin.")],
    name: Annotated[str, typer.Option(help="Who or what holds it.")] = "token",
    token: TokenOption = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Create a token; it is printed once and stored only as a hash. Needs an admin token once
    the project has one."""
    with opened(project) as ws:
        secret, who = ws.tokens.create(role, name, actor=_token_manager(ws, token))
    if json_out:
        emit_json({"token": secret, "id": who.token_id, "role": who.role, "name": who.name})
    else:
        typer.echo(secret)


@token_app.command("list")
def token_list(project: ProjectOption = None, json_out: JsonOption = False) -> None:
    """List tokens (never their secrets)."""
    with opened(project) as ws:
        rows = ws.tokens.all()
    if json_out:
        emit_json(rows)
    else:
        table(
            "tokens",
            ["id", "name", "role", "revoked", "created"],
            [[r["id"], r["name"], r["role"], r["revoked"], r["created_at"]] for r in rows],
        )


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="Token id.")],
    token: TokenOption = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Revoke a token at once (needs an admin token once the project has one; the last admin
    token cannot be revoked)."""
    with opened(project) as ws:
        done = ws.tokens.revoke(token_id, actor=_token_manager(ws, token))
    if not done:
        raise NotFoundError(f"no active token {token_id!r} (see kennel token list)")
    if json_out:
        emit_json({"id": token_id, "revoked": True})
    else:
        console.print(f"{token_id}: revoked")
