"""``kennel export``: a registered model packaged for another deployment pattern (a wheel to
embed, a container and Kubernetes manifests)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kennel.cli.app import JsonOption, ProjectOption, UngatedOption, model_ref, new_app, opened
from kennel.cli.render import console, emit_json
from kennel.errors import ConfigError

export_app = new_app("Package a registered model for another deployment pattern.")


@export_app.command("package")
def export_package(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION or NAME@ALIAS.")],
    out: Annotated[Path, typer.Option(help="Folder to write the wheel into.")] = Path("dist"),
    ungated: UngatedOption = False,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Build an installable wheel (pattern 1, embedded): predict() on onnxruntime+numpy+Pillow."""
    from kennel.fsutil import outside_state
    from kennel.package.wheel import build_wheel
    from kennel.serve.runtime import Bundle

    with opened(project) as ws:
        outside_state(out, ws.project.state_dir)
        entry = ws.registry.resolve(model_ref(ws, ref, None, ungated=ungated))
        files = {name: ws.registry.read_file(entry, name) for name in entry.files}
    bundle = Bundle.from_files(files)  # every hash checked before anything is packaged
    wheel = build_wheel(files, bundle.meta, out)
    result = {"wheel": str(wheel), "model": bundle.name, "version": bundle.version}
    if json_out:
        emit_json(result)
    else:
        console.print(
            f"wrote {wheel} ({bundle.name}@{bundle.version}); pip install it", markup=False
        )


@export_app.command("k8s")
def export_k8s(
    env: Annotated[str, typer.Option("--env", help="The environment to serve.")] = "production",
    image: Annotated[
        str | None, typer.Option(help="Container image (default: kennel-mlops:VERSION).")
    ] = None,
    replicas: Annotated[int, typer.Option(min=1, help="Replicas (the autoscaler's floor).")] = 2,
    max_replicas: Annotated[int, typer.Option(min=1, help="The autoscaler's ceiling.")] = 8,
    namespace: Annotated[str | None, typer.Option(help="Kubernetes namespace.")] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Name of the Deployment, Service... (default: kennel-ENV)."),
    ] = None,
    include_secrets: Annotated[
        bool,
        typer.Option(
            help=(
                "Write the project's store and webhook URLs into secret.yaml "
                "(default: placeholders)."
            )
        ),
    ] = False,
    out: Annotated[Path, typer.Option(help="Folder for Dockerfile and k8s/.")] = Path("deploy"),
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """A Dockerfile and Kubernetes manifests (Deployment, Service, autoscaler, disruption
    budget, ConfigMap, Secret) serving ENV on the project's shared stores."""
    from kennel.config import load_project
    from kennel.deploy.k8s import K8sOptions, manifests
    from kennel.fsutil import outside_state, write_text_atomic

    options = K8sOptions(
        env=env,
        replicas=replicas,
        max_replicas=max_replicas,
        namespace=namespace,
        name=name,
        include_secrets=include_secrets,
        image=image or K8sOptions.image,
    )
    loaded = load_project(project)
    files = manifests(loaded, options)  # every name checked, nothing written
    outside_state(out, loaded.state_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    folders = sorted({(out / file).parent for file in files})
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, a read-only or forbidden place
        raise ConfigError(f"--out {out}: cannot make {folder}: {exc.strerror or exc}") from exc
    try:
        for file, text in files.items():  # the Secret (store URLs, passwords): its owner only
            mode = 0o600 if file.endswith("secret.yaml") else 0o666
            write_text_atomic(out / file, text, mode=mode)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write {file}: {exc.strerror or exc}") from exc
    if json_out:
        emit_json({"out": str(out), "files": sorted(files)})
        return
    console.print(f"wrote {', '.join(sorted(files))} under {out}", markup=False)
    if not include_secrets:
        console.print(
            f"fill {out / 'k8s' / 'secret.yaml'} (placeholders: change-me) before applying",
            markup=False,
        )
