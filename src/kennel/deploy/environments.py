"""Starting, finding and stopping the prediction service of an environment."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from kennel.errors import ServiceError
from kennel.fsutil import write_atomic

if TYPE_CHECKING:
    from kennel.registry.entities import ModelVersion


@cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every probe: building one reads the CA bundle (~150 ms), which a
    dashboard that probes each environment on every page view cannot pay each time."""
    return httpx.create_ssl_context()


def served(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """What the service at ``url`` says it serves (``/health/ready``: version, model name,
    the sha256 of its bundle's metadata file), or None when it is not answering or not
    ready."""
    try:
        response = httpx.get(f"{url}/health/ready", timeout=timeout, verify=_tls())
        if response.status_code != 200:
            return None
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) and body.get("version") is not None else None


def served_version(url: str, timeout: float = 2.0) -> int | None:
    """The version the service at ``url`` serves now, or None when it is not answering."""
    body = served(url, timeout)
    return int(body["version"]) if body is not None else None


def is_live(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/live", timeout=2.0, verify=_tls()).status_code == 200
    except httpx.HTTPError:
        return False


# Handles of services this process started: kept so they are never garbage-collected while
# running (the service outlives the command that started it; `stop` ends it by pid).
_started: list[subprocess.Popen[bytes]] = []


def _pidfile(state_dir: Path, env: str) -> Path:
    return state_dir / "run" / f"serve-{env}.pid"


def _started_at(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, from /proc), "" where that cannot
    be read: with the pid, it names one process, not whichever later reuses the number."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except OSError:
        return ""
    return fields[19] if len(fields) > 19 else ""


def _is_service(pid: int, env: str, root: Path | None) -> bool:
    """Whether ``pid`` runs ``kennel serve --env ENV -C ROOT`` as ``start`` launched it (any
    ROOT when ``root`` is None). Without /proc to ask, the pid (and start time) alone."""
    if not os.path.isdir("/proc/self"):
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    wanted = [b"kennel.cli", b"serve", b"--env", env.encode(), b"-C"]
    if root is not None:
        wanted.append(os.fsencode(root))
    return all(part in argv for part in wanted)


_PIDFILE = re.compile(rb"^([0-9]{1,7})(?: ([0-9]{1,20}))?\Z")
PID_MAX = 4_194_304  # Linux's ceiling for a pid


def _recorded(pidfile: Path) -> tuple[int, str | None]:
    """The pid and start time a pidfile records (None: an older one, the pid alone); pid 0
    when it holds anything else."""
    match = _PIDFILE.match(pidfile.read_bytes().strip())
    if match is None or not 0 < int(match.group(1)) <= PID_MAX:
        return 0, None
    started = match.group(2)
    return int(match.group(1)), started.decode() if started is not None else None


def start(project_root: Path, state_dir: Path, env: str, url: str, timeout: float = 60.0) -> int:
    """Start ``kennel serve --env ENV`` in the background; returns its pid once it is live."""
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    pidfile = _pidfile(state_dir, env)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"serve-{env}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kennel.cli", "serve", "--env", env, "-C", str(project_root)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _started.append(proc)
    write_atomic(pidfile, f"{proc.pid} {_started_at(proc.pid)}".strip().encode())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_live(url):
            return proc.pid
        if proc.poll() is not None:
            raise ServiceError(
                f"the {env} service exited with code {proc.returncode}; "
                f"see {log_dir}/serve-{env}.log"
            )
        time.sleep(0.1)
    raise ServiceError(f"the {env} service did not come up at {url} within {timeout:.0f}s")


def recorded(state_dir: Path, env: str) -> bool:
    """Whether a service of ``env`` started by ``start`` is on record (it may have died)."""
    return _pidfile(state_dir, env).is_file()


def stop(state_dir: Path, env: str, timeout: float = 30.0) -> bool:
    """Stop a service started by ``start`` (SIGTERM: drain, then exit). False if none ran."""
    pidfile = _pidfile(state_dir, env)
    if not pidfile.is_file():
        return False
    pid, started = _recorded(pidfile)
    # the service died (kill -9, a reboot) and its number may belong to another process now:
    # the process that started then, running an ENV service (its -C may name the project's
    # folder before a rename); a pidfile of an older kennel holds the pid alone: then it must
    # be this project's service, -C and all
    if started is not None:
        service = _started_at(pid) == started and _is_service(pid, env, None)
    else:
        service = _is_service(pid, env, state_dir.parent)
    if pid <= 0 or not service:
        pidfile.unlink(missing_ok=True)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return False
    ours = next((p for p in _started if p.pid == pid), None)
    if ours is not None:  # our own child: wait reaps it
        with contextlib.suppress(subprocess.TimeoutExpired):
            ours.wait(timeout)
        _started.remove(ours)
    else:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    pidfile.unlink(missing_ok=True)
    return True


def wait_for_version(
    url: str,
    version: int,
    timeout: float = 30.0,
    *,
    model: ModelVersion | None = None,
    bundle_of: Callable[[int], str | None] | None = None,
) -> None:
    """Wait until the service at ``url`` serves ``version``. Given ``model`` and ``bundle_of``
    (the digest of this project's metadata file for a version of it, None for a version it
    does not have): a service of another project on the port is an error at once, never
    certified in its place, whether it serves another model, or the same name and version
    (the same model bytes, even) registered there, not here."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = served(url)
        if body is not None and model is not None and bundle_of is not None:
            check_owner(url, body, model, bundle_of)
        if body is not None and int(body["version"]) == version:
            return
        time.sleep(0.1)
    raise ServiceError(f"{url} did not start serving version {version} within {timeout:.0f}s")


def check_owner(
    url: str,
    body: dict[str, Any] | None,
    model: ModelVersion,
    bundle_of: Callable[[int], str | None],
) -> None:
    """ServiceError unless the service at ``url`` (its ``/health/ready`` ``body``; None: not
    answering, nothing to say) serves a bundle of ``model``'s project: the same model name
    and, for the version it serves, the digest ``bundle_of`` gives. A service that reports
    no digest (another project's, or a kennel from before digests) is not taken for ours."""
    if body is None:
        return
    name, digest = body.get("model"), body.get("sha256")
    if name == model.name and digest is not None and digest == bundle_of(int(body["version"])):
        return
    raise ServiceError(
        f"{url} is held by another service ({name}@{body['version']}, not a version of this "
        f"project's {model.name}): stop it (an older kennel's too: its successor says which "
        "bundle it serves), or give this environment another port in kennel.yaml"
    )


def check_free(url: str) -> None:
    """ServiceError when something that is not a kennel service listens on ``url``'s port: the
    service a deploy starts there would exit at once, after the alias had moved."""
    if is_live(url):
        return
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=1.0):
            pass
    except OSError:
        return  # nothing listens: the port is free for the service
    raise ServiceError(
        f"{url}: port {parts.port} is in use by another program (not a kennel service): stop "
        "it, or give this environment another port in kennel.yaml"
    )
