"""The root Typer app and its error handling: a KennelError becomes one line on stderr and the
exit code from ``kennel.errors.STATUS``."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from kennel.errors import AuthError, ConfigError, KennelError, status_of
from kennel.serve.auth import Identity
from kennel.wiring import Workspace


class KennelGroup(TyperGroup):
    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context
        try:
            return super().invoke(ctx)
        except KennelError as exc:
            message = " ".join(str(exc).split())
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(status_of(exc).exit_code) from None


def new_app(help_text: str) -> typer.Typer:
    return typer.Typer(
        cls=KennelGroup,
        help=help_text,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )


ProjectOption = Annotated[
    Path | None,
    typer.Option(
        "--project",
        "-C",
        envvar="KENNEL_PROJECT",
        help="Project folder holding kennel.yaml (default: the current directory).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="KENNEL_TOKEN", help="A token whose role allows this."),
]


def acting(ws: Workspace, token: str | None) -> Identity:
    """Who runs a state-changing command: the holder of ``token``; without one, the local
    operator, but only when kennel.yaml grants that role (``auth.local_role``)."""
    if token:
        who = ws.tokens.identify(token)
        if who is None:
            raise AuthError("the token is unknown or revoked")
        return who
    role = ws.project.config.auth.local_role
    if role is None:
        raise AuthError(
            "this command needs a token whose role allows it: pass --token or set KENNEL_TOKEN "
            "(see kennel token create), or set auth.local_role in kennel.yaml for a "
            "single-user project"
        )
    return Identity("local", f"local:{getpass.getuser()}", role)


@contextmanager
def opened(project: Path | None) -> Iterator[Workspace]:
    """The project's workspace for one command; its database connections closed afterwards."""
    ws = Workspace.load(project)
    try:
        yield ws
    finally:
        ws.close()


def model_ref(ws: Workspace, model: str | None, env: str | None) -> str:
    """``--model NAME@VERSION`` or ``--env ENV`` (the model that environment's alias names)."""
    if (model is None) == (env is None):
        raise ConfigError("give exactly one of --model NAME@VERSION or --env ENV")
    if env is not None:
        config = ws.project.config
        return f"{config.model.name}@{config.environment(env).alias}"
    assert model is not None
    return model
