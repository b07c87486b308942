"""``kennel ui``: the web dashboard over the project (``kennel.ui``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kennel.cli.app import ProjectOption
from kennel.cli.render import console


def ui(
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port (8080 and 8081 are the services').")
    ] = 8090,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="TLS certificate (PEM): serve https, Secure cookies.")
    ] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    public_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="The origin a TLS proxy serves this under (https://kennel.example.com; "
            "repeat or comma-separate): answered to as Host and accepted as Origin."
        ),
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Serve the web dashboard: pipeline, deployments, alerts and audit, updated live.

    Sign in with a role token (kennel token create); its buttons act as that role may."""
    import uvicorn

    from kennel.errors import ConfigError
    from kennel.serve.server import listening, server_config
    from kennel.ui.app import create_app
    from kennel.ui.origins import allowed_hosts, is_loopback, public_origins
    from kennel.wiring import Workspace

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError("give both --ssl-certfile and --ssl-keyfile, or neither")
    if ssl_certfile is not None and ssl_keyfile is not None:
        _check_tls(ssl_certfile, ssl_keyfile)
    origins = public_origins(public_origin or [])
    sock = listening(host, port)  # a busy port is told before the banner, in one line
    ws = Workspace.load(project)
    # on loopback, answer only to loopback names (and the proxy's): a page elsewhere that
    # rebinds its own name to a loopback address (DNS rebinding) gets no answer
    app = create_app(
        ws,
        allowed_hosts=allowed_hosts(host, origins),
        public_origins=origins,
        tls=ssl_certfile is not None,
    )
    scheme = "https" if ssl_certfile else "http"
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"kennel dashboard for {ws.project.root} on {scheme}://{shown}:{port}/", markup=False
    )
    if not is_loopback(host) and ssl_certfile is None:
        console.print(
            "[yellow]warning:[/] not on loopback and without TLS: tokens and session cookies "
            "cross the network in clear (give --ssl-certfile/--ssl-keyfile or put a TLS proxy "
            "in front)"
        )
    config = server_config(
        app,
        ws.project.config.serve,  # the same connection limit, keep-alive and body deadline
        server_header=False,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )
    uvicorn.Server(config).run(sockets=[sock])


class _Encrypted(Exception):
    pass


def _asked_for_a_password() -> bytes:
    raise _Encrypted


def _check_tls(certfile: Path, keyfile: Path) -> None:
    """Load the pair here, so that a wrong file is one line before anything starts: regular
    files only (a FIFO would block), and a key that needs a passphrase is refused (the server
    would stop to ask for it)."""
    import ssl

    from kennel.errors import ConfigError

    pair = f"{certfile} and {keyfile}"
    for path in (certfile, keyfile):
        if not path.is_file():
            problem = "does not exist" if not path.exists() else "is not a regular file"
            raise ConfigError(f"cannot use {pair}: {path} {problem}")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            certfile, keyfile, password=_asked_for_a_password
        )
    except _Encrypted as exc:
        raise ConfigError(
            f"cannot use {pair}: the private key is encrypted; give it unencrypted"
        ) from exc
    except ssl.SSLError as exc:
        raise ConfigError(
            f"cannot use {pair}: not a PEM certificate with its matching private key "
            f"({exc.reason or exc})"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot use {pair}: {exc.strerror or exc}") from exc
