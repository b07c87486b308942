"""Running a Service: assembled from a project's config, served by uvicorn with a graceful drain
(SIGTERM turns readiness to 503 first, keeps answering for ``drain_s``, then stops accepting and
lets in-flight requests finish)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from kennel.config import KennelConfig, ServeConfig
from kennel.db import Database
from kennel.errors import ConfigError, ServiceError
from kennel.registry.store import ModelRegistry
from kennel.serve import overload
from kennel.serve.app import Service, create_app
from kennel.serve.auth import TokenStore
from kennel.serve.holder import ModelHolder
from kennel.serve.hosts import loopback_hosts
from kennel.serve.predlog import PredictionLog
from kennel.storage import ContentStore


def build_service(
    config: KennelConfig,
    env: str,
    *,
    db: Database,
    registry: ModelRegistry,
    state_dir: Path,
    inputs: ContentStore | None = None,
) -> Service:
    """The service of environment ``env``: kennel.yaml's ``serve`` section as its settings.
    Input images are kept (``serve.keep_inputs``) only when there is a store for them."""
    holder = ModelHolder.following(registry, config, env)
    s = config.serve
    predlog = PredictionLog(
        db,
        state_dir / "spool" / f"{env}.jsonl",
        flush_s=s.log_flush_s,
        sync=s.log_sync,
        inputs=inputs if s.keep_inputs else None,
        min_free=s.inputs_min_free_mb * 2**20,
    )
    return Service(
        holder=holder,
        tokens=TokenStore(db),
        db=db,
        predlog=predlog,
        settings=s,
        environment=env,
    )


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service, drain_s: float) -> None:
        super().__init__(config)
        self.service = service
        self.drain_s = drain_s

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()  # a drained shutdown is a clean exit (status 0)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.service.draining or self.drain_s <= 0:
            super().handle_exit(sig, frame)
            return
        self.service.draining = True  # readiness answers 503 from now on
        timer = threading.Timer(self.drain_s, super().handle_exit, args=(sig, frame))
        timer.daemon = True
        timer.start()


def server_config(app: Any, settings: ServeConfig | None = None, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for a kennel app: at most ``max_connections`` connections and
    requests at once (more are answered 503), idle kept-alive connections closed after
    ``keep_alive_s`` (the body's deadline is the app's: ``kennel.serve.deadline``). A client's
    address is the connection's peer: uvicorn's default trusts X-Forwarded-For from
    127.0.0.1, where every client of a loopback service comes from, so any of them could
    claim any address (and slip the dashboard's sign-in throttle)."""
    settings = settings or ServeConfig()
    overload.install()  # a connection past the limit gets kennel's JSON 503, not plain text
    options.setdefault("http", overload.protocol())  # and a malformed request a JSON 400
    return uvicorn.Config(
        app,
        proxy_headers=False,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=30,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=max(1, round(settings.keep_alive_s)),
        **options,
    )


def listening(host: str, port: int) -> socket.socket:
    """A socket bound to host:port as uvicorn binds one, bound before anything says the
    server is up: a host that is no address or name, or a port another process holds, is a
    one-line error instead of a banner followed by uvicorn's log line."""
    if not host.strip():  # the empty host binds every interface: never by accident
        raise ConfigError("cannot serve on an empty host; name one (127.0.0.1, 0.0.0.0, ...)")
    shown = f"[{host}]" if ":" in host else host
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except socket.gaierror as exc:
        sock.close()
        raise ConfigError(
            f"cannot serve on host {host!r}: not an IP address or a name that resolves "
            f"({exc.strerror})"
        ) from exc
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ServiceError(f"cannot listen on {shown}:{port}: {reason}") from exc
    sock.set_inheritable(True)
    return sock


def serve(
    service: Service, sock: socket.socket, *, drain_s: float = 2.0, host: str | None = None
) -> None:
    """Serve ``service`` on ``sock`` (from ``listening``) until SIGTERM or Ctrl-C; ``host``:
    the name it was bound by (``127.1``, a host name), answered to as well on loopback."""
    bound = sock.getsockname()[0]
    own = f"[{bound}]" if ":" in bound else bound
    hosts = loopback_hosts(host or bound, [*service.settings.hosts, own])
    config = server_config(create_app(service, hosts), service.settings)
    DrainingServer(config, service, drain_s).run(sockets=[sock])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    """A service on a loopback port in a background thread (tests, benchmarks, the demo)."""

    server: uvicorn.Server
    thread: threading.Thread
    url: str
    service: Service | None = None

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def start_in_thread(
    service: Service, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0
) -> RunningServer:
    hosts = loopback_hosts(host, service.settings.hosts)
    running = start_app_in_thread(
        create_app(service, hosts), host, port, timeout, settings=service.settings
    )
    running.service = service
    return running


def start_app_in_thread(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 30.0,
    *,
    settings: ServeConfig | None = None,
) -> RunningServer:
    """Any ASGI app on a loopback port in a background thread, served as ``serve`` would
    (``settings``' connection limits; default ones without)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this; without it Nagle + delayed ACKs add ~40 ms per response.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, settings))
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])),
        name=f"kennel-serve-{bound}",
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        raise RuntimeError("service did not start")
    return RunningServer(server, thread, f"http://{host}:{bound}")
