"""The Ray engine: ingest's per-file work as Ray tasks on a Ray cluster (``ray`` is imported
only when an ingest runs on it, so ``kennel --help`` never pays for it). Batch scoring runs its
chunks through the same engine (``session`` and ``tasks``; ``kennel.stream.ray_scoring``).

A task is a pure function of its chunk whose only side effect is writing content-addressed
blobs, so Ray may run it again when its worker process or node dies (``max_retries``): the
second run writes the same keys (a no-op) and returns the same results, and the driver records
each chunk once. Nothing is lost and nothing is duplicated.

The workers write straight to the artifact store, so they must all reach it: a folder on this
machine serves a cluster whose nodes are all on this machine; a cluster across machines needs a
shared store (S3). Ray's own connect retries for ever at an address where no Ray head answers,
so the address is probed first, with a timeout.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from kennel.digits import ascii_number
from kennel.errors import ConfigError, EngineError, KennelError
from kennel.ingest.engines import Chunk, Results, Target
from kennel.ingest.validate import Limits, check_and_store
from kennel.storage import ContentStore, open_content_store

CONNECT_TIMEOUT_S = 10.0
T = TypeVar("T")
_INET = (socket.AF_INET, socket.AF_INET6)


def is_local_store(artifacts_url: str) -> bool:
    """A folder on this machine (what workers elsewhere cannot reach)."""
    return "://" not in artifacts_url or artifacts_url.startswith("file://")


def _local_ips() -> set[str]:
    import psutil

    found = {"127.0.0.1", "::1"}
    for addresses in psutil.net_if_addrs().values():
        found.update(a.address.split("%")[0] for a in addresses if a.family in _INET)
    return found


def _is_local_ip(ip: str, local: set[str]) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback or ip in local
    except ValueError:
        return False


def _split(address: str) -> tuple[str, int]:
    """``host:port`` (``ray://`` and IPv6 brackets allowed), else a ConfigError naming it."""
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    number = ascii_number(port)
    if not sep or not host or number is None or not 0 < number < 65536:
        raise ConfigError(f"Ray address {address!r} is not HOST:PORT (or 'auto')")
    return host, number


def _resolve(address: str, host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise EngineError(
            f"Ray cluster at {address} is unreachable: {exc.strerror or exc}"
        ) from exc
    return sorted({str(info[4][0]) for info in infos})


# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS) answers with
# a SETTINGS frame of its own (frame type 4, the fourth byte of its 9-byte header).
_H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_H2_SETTINGS = 4


def probe(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within about ``timeout`` unless a gRPC server (a Ray head's GCS) answers at
    ``address``: Ray's own connect retries for ever where nothing, or something else, listens."""
    host, port = _split(address)
    _resolve(address, host, port)
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # a TLS handshake comes first: reaching the port is all we can check
            conn.sendall(_H2_HELLO)
            head = b""
            while len(head) < 9 and (got := conn.recv(9 - len(head))):
                head += got
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise EngineError(f"Ray cluster at {address} is unreachable: {reason}") from exc
    if len(head) < 9 or head[3] != _H2_SETTINGS:
        raise EngineError(f"Ray cluster at {address} is unreachable: no Ray head answers there")


def check_reach(address: str | None, artifacts_url: str) -> None:
    """Refuse what Ray workers could not do: write to a store that lives in one process, or to
    this machine's folder from other machines."""
    if artifacts_url.startswith("memory://"):
        raise ConfigError(
            f"store.artifacts_url {artifacts_url!r} lives in one process; "
            "Ray workers need a folder or a shared store (s3://...)"
        )
    if address is None or address in ("auto", "local") or not is_local_store(artifacts_url):
        return
    host, port = _split(address)
    local = _local_ips()
    if not all(_is_local_ip(ip, local) for ip in _resolve(address, host, port)):
        raise ConfigError(
            f"Ray cluster at {address} is on another machine but store.artifacts_url "
            f"{artifacts_url!r} is a local folder; use a shared store (s3://...)"
        )


# Worker-side state: one store handle per artifacts URL and worker process.
_stores: dict[str, ContentStore] = {}


def check_on_worker(artifacts_url: str, limits: Limits, chunk: Chunk) -> Results:
    """One Ray task: check a chunk and store its accepted bytes (safe to run twice)."""
    store = _stores.get(artifacts_url)
    if store is None:
        store = _stores[artifacts_url] = open_content_store(artifacts_url)
    return check_and_store(store, limits, chunk)


class RayEngine:
    """Ray tasks on the cluster at ``address`` (``host:port`` of its head, ``auto`` for the one
    ``ray start`` left on this machine, or None: ``RAY_ADDRESS``, else a fresh Ray instance on
    this machine with ``num_cpus`` CPUs, refused for a cluster). ``max_retries``: how often a
    chunk whose worker or node died is run again before the ingest fails (it can then resume)."""

    name = "ray"
    reads_local_files = False  # a node may be another machine: the driver sends the bytes
    stores_durably = True  # ... and syncs its own writes

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        max_retries: int = 5,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        inflight_per_cpu: int = 2,
    ) -> None:
        if address is not None and not address.strip():
            raise ConfigError("Ray address is empty: give a cluster's HOST:PORT or 'auto'")
        if num_cpus is not None and num_cpus < 1:
            raise ConfigError(f"a local Ray instance needs at least one CPU, not {num_cpus}")
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        if num_cpus is not None and self.address not in (None, "local"):
            raise ConfigError(
                f"the Ray cluster at {self.address} has its own CPUs; "
                "--workers sizes only a new local Ray instance"
            )
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.connect_timeout_s = connect_timeout_s
        self.inflight_per_cpu = inflight_per_cpu
        self._window = 0

    @property
    def where(self) -> str:
        return self.address or "a new local Ray instance"

    @contextmanager
    def connected(self, target: Target) -> Iterator[None]:
        with self.session(target.artifacts_url):
            yield

    @contextmanager
    def session(self, artifacts_url: str | None = None) -> Iterator[None]:
        """Connected to the cluster (or raise before anything is written) for ``tasks``;
        ``artifacts_url``: the store the tasks write to, which every node must reach."""
        if artifacts_url is not None:
            check_reach(self.address, artifacts_url)
        if self.address not in (None, "auto", "local"):
            probe(self.address, self.connect_timeout_s)
        import ray

        owned = not ray.is_initialized()
        if owned:
            self._init(ray)
        try:
            if artifacts_url is not None and is_local_store(artifacts_url):
                self._all_nodes_local(ray, artifacts_url)
            cpus = int(ray.cluster_resources().get("CPU", 0))  # type: ignore[no-untyped-call]
            if cpus < 1:
                raise EngineError(f"Ray cluster at {self.where} has no CPUs to run tasks on")
            self._window = max(2, self.inflight_per_cpu * cpus)
            yield
        finally:
            self._window = 0
            if owned:
                ray.shutdown()

    def _init(self, ray: Any) -> None:
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR"}
        if self.address in (None, "local"):
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            options |= {"include_dashboard": False, "num_cpus": self.num_cpus}
        try:
            # "local", not None: None attaches to a cluster ``ray start`` left on this machine
            ray.init(address=self.address or "local", **options)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"cannot connect to Ray cluster at {self.where}: {first}") from exc

    def _all_nodes_local(self, ray: Any, artifacts_url: str) -> None:
        local = _local_ips()
        remote = sorted(
            {
                str(n["NodeManagerAddress"])
                for n in ray.nodes()
                if n.get("Alive") and not _is_local_ip(str(n["NodeManagerAddress"]), local)
            }
        )
        if remote:
            raise ConfigError(
                f"Ray cluster at {self.where} has nodes on other machines ({', '.join(remote)}) "
                f"but store.artifacts_url {artifacts_url!r} is a local folder; "
                "use a shared store (s3://...)"
            )

    def expect(self, files: int) -> None:
        """Nothing to ready: the cluster's workers are up already."""

    def map(self, target: Target, chunks: Iterable[Chunk], files: int) -> Iterator[Results]:
        calls = ((target.artifacts_url, target.limits, chunk) for chunk in chunks)
        return self.tasks(check_on_worker, calls, job="ingest")

    def tasks(
        self, fn: Callable[..., T], calls: Iterable[tuple[Any, ...]], *, job: str
    ) -> Iterator[T]:
        """``fn(*call)`` for each call as a Ray task named ``kennel-{job}``, results in the
        order of ``calls``, at most a window of them in flight. ``fn`` must be safe to run twice
        (Ray runs it again when its worker or node dies). Only valid inside ``session``."""
        if not self._window:
            raise EngineError("RayEngine tasks run only inside connected() or session()")
        import ray

        task = ray.remote(fn).options(
            name=f"kennel-{job}", num_cpus=1, max_retries=self.max_retries, retry_exceptions=False
        )
        inflight: deque[Any] = deque()
        try:
            for call in calls:
                inflight.append(task.remote(*call))
                if len(inflight) >= self._window:
                    yield self._result(ray, inflight.popleft(), job)
            while inflight:
                yield self._result(ray, inflight.popleft(), job)
        finally:
            for ref in inflight:  # the job failed or was abandoned: stop what is queued
                ray.cancel(ref, force=True)

    def _result(self, ray: Any, ref: Any, job: str) -> Any:
        from ray.exceptions import RayError, RayTaskError

        try:
            return ray.get(ref)
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, KennelError):
                raise cause from exc
            raise EngineError(f"{_a(job)} task failed on Ray: {cause!r}") from exc
        except RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise EngineError(
                f"{_a(job)} task failed on Ray after {self.max_retries} retries "
                f"({type(exc).__name__}: {first}); run the {job} again to resume"
            ) from exc


def _a(job: str) -> str:
    return f"an {job}" if job[:1] in "aeiou" else f"a {job}"
