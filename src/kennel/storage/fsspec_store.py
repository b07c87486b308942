"""Any fsspec filesystem (s3, gcs, azure, memory, file, ...) as a BlobStore.

Every call to the filesystem goes through ``_call``: the one place where this store retries
transient failures (with ``kennel.retry``'s bounded backoff) and turns the driver's errors
into kennel's (``NotFoundError``, or a one-line ``StorageError`` naming the store and its
endpoint). For S3 the driver's own retry loops (botocore's and s3fs's) are switched off so
that the retries are counted once, here.

Where S3 is: ``s3://bucket/prefix`` goes to the endpoint of the standard AWS settings
(``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, else AWS itself); ``s3+http://host:port/bucket
/prefix`` (or ``s3+https://``) names an S3-compatible server in the URL itself, so that the one
string in kennel.yaml reaches every worker process. Credentials never go in the URL: they come
from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` or an instance role.
"""

from __future__ import annotations

import functools
import os
import posixpath
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

import fsspec

from kennel.config.data import s3_credentials_problem, s3_url_problem
from kennel.display import redact
from kennel.errors import ConfigError, KennelError, NotFoundError, StorageError
from kennel.retry import Backoff, first_line, retrying
from kennel.storage.base import check_key

T = TypeVar("T")
# Object stores write a whole object atomically on PUT; elsewhere write a temp name, then move.
_ATOMIC_PUT = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"}
_S3 = {"s3", "s3a"}
# S3 error codes that mean "try again": throttling and the service's own failures.
_RETRY_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
}
_PARALLEL_PUTS = 8
_RETRY_STATUS = {429, 500, 502, 503, 504}
BACKOFF = Backoff(attempts=4, base_s=0.2, cap_s=2.0)
# Per try: to open a connection, and to wait for the server's next bytes (botocore's
# read_timeout is per socket read, so a long transfer that keeps moving is not cut short).
# A hung server costs at most BACKOFF.attempts x READ_TIMEOUT_S + BACKOFF.budget_s.
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 5


def s3_options(options: dict[str, Any]) -> dict[str, Any]:
    """s3fs options: the endpoint from the AWS environment when not given (so that it is part
    of fsspec's instance cache key), short timeouts, and no retries below ours."""
    out = dict(options)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "endpoint_url" not in out:
        out["endpoint_url"] = endpoint
    out.setdefault("use_listings_cache", False)  # other processes write here too
    config = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "read_timeout": READ_TIMEOUT_S,
        "retries": {"total_max_attempts": 1, "mode": "standard"},
        **out.get("config_kwargs", {}),
    }
    out["config_kwargs"] = config
    return out


def _drop_expect(request: Any, **_: Any) -> None:
    request.headers.pop("Expect", None)


def _without_expect_continue(fs: Any, url: str) -> None:
    """Send PUT bodies without ``Expect: 100-continue``. botocore asks for it on every upload,
    and aiohttp waits for the server's ``100 Continue`` with no timeout at all and starts the
    read timeout only once the body is sent: a server that accepts the connection and never
    answers hung a write for good. (``Expect`` is not a signed header.)"""
    try:
        fs.connect()  # makes the client; sends nothing
    except Exception as exc:
        raise StorageError(
            f"cannot open the artifact store {redact(url)}: {redact(first_line(exc))}"
        ) from exc
    # the filesystem is shared by fsspec's instance cache: the id keeps one handler
    fs.s3.meta.events.register("before-send.s3", _drop_expect, unique_id="kennel-no-expect")


def split_endpoint(url: str) -> tuple[str, str | None]:
    """``s3+http://host:port/bucket/prefix`` -> (``s3://bucket/prefix``, ``http://host:port``);
    any other URL -> (url, None)."""
    credentials = s3_credentials_problem(url)
    if credentials:
        raise StorageError(credentials)
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in _S3_AT:
        return url, None
    parts = urlsplit(url)
    problem = s3_url_problem(url)
    if problem:
        raise StorageError(problem)
    if not parts.hostname or not parts.path.strip("/"):
        raise StorageError(f"{url!r} must look like {scheme}://host:port/bucket/prefix")
    return f"s3://{parts.path.lstrip('/')}", f"{_S3_AT[scheme]}://{parts.netloc}"


_S3_AT = {"s3+http": "http", "s3+https": "https"}


class FsspecBlobStore:
    def __init__(self, url: str, *, backoff: Backoff = BACKOFF, **storage_options: Any) -> None:
        target, endpoint = split_endpoint(url)
        if endpoint:
            storage_options.setdefault("endpoint_url", endpoint)
        protocol = fsspec.core.split_protocol(target)[0] or "file"
        if protocol not in fsspec.available_protocols():  # a mistyped URL: the config's fault
            raise ConfigError(
                f"artifact store {redact(url)}: unknown scheme {protocol!r} (use a path, "
                "s3://bucket/prefix, s3+http(s)://host:port/bucket/prefix or an fsspec protocol)"
            )
        self._s3 = protocol in _S3
        if self._s3:
            storage_options = s3_options(storage_options)
        try:
            fs, root = fsspec.core.url_to_fs(target, **storage_options)
        except (ImportError, ValueError) as exc:
            shown = f"{redact(url)}: {redact(first_line(exc))}"
            raise StorageError(f"cannot open the artifact store {shown}") from exc
        if self._s3:
            fs.retries = 1  # s3fs's own retry loop: one try, ours does the rest
            _without_expect_continue(fs, url)
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        self.backoff = backoff
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        self._atomic_put = bool(_ATOMIC_PUT.intersection(protocols))
        self._local = "file" in protocols or "local" in protocols

    def _path(self, key: str) -> str:
        return posixpath.join(self.root, check_key(key))

    def _where(self) -> str:
        shown = redact(self.url)  # an sftp:// or http:// store may carry a password
        return f"{shown} at {_endpoint(self.fs)}" if self._s3 else shown

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """``call()`` with retries on transient errors; foreign errors become kennel's."""
        try:
            return retrying(call, transient=transient, backoff=self.backoff, what=what)
        except (KennelError, FileNotFoundError, FileExistsError):
            raise
        except Exception as exc:
            why = "unreachable" if transient(exc) else "failed"
            raise StorageError(
                f"the artifact store {self._where()} {why}: cannot {what}: "
                f"{redact(first_line(exc))}"
            ) from exc

    def check(self) -> None:
        """Raise StorageError unless the store answers (and, on S3, its bucket exists)."""
        if self._s3:
            bucket = self.root.split("/", 1)[0]

            def head() -> None:
                try:
                    self.fs.call_s3("head_bucket", Bucket=bucket)
                except FileNotFoundError as exc:
                    raise NotFoundError(
                        f"the artifact store {self._where()} has no bucket {bucket!r}"
                    ) from exc

            self._call(f"find bucket {bucket!r}", head)
        else:
            self._call("list the store", lambda: self.fs.exists(self.root))

    def put(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            return self._call(f"write {key!r}", lambda: self._put(path, data))
        except FileNotFoundError as exc:  # S3: no such bucket
            raise StorageError(
                f"the artifact store {self._where()} failed: cannot write {key!r}: "
                f"{redact(first_line(exc))}"
            ) from exc

    def _put(self, path: str, data: bytes) -> bool:
        if self._s3:  # a conditional PUT (If-None-Match: *): exactly one writer creates a key
            try:
                self.fs.pipe_file(path, data, mode="create")
                return True
            except FileExistsError:
                return False
        if self.fs.exists(path):
            return False
        if self._atomic_put:
            self.fs.pipe_file(path, data)
            return True
        parent = posixpath.dirname(path)
        self.fs.makedirs(parent, exist_ok=True)
        tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}")
        self.fs.pipe_file(tmp, data)
        if self._local:  # link() fails when the name exists: exactly one racing writer wins
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        if self.fs.exists(path):
            self.fs.rm_file(tmp)
            return False
        self.fs.mv(tmp, path)
        return True

    def put_many(self, items: list[tuple[str, bytes]], *, durable: bool = True) -> int:
        # each put is as durable as its file system makes it once it returns (an object
        # store's PUT is): ``durable`` changes nothing here
        if len(items) < 2 or not self._atomic_put:
            return sum(self.put(key, data) for key, data in items)
        # an object store's latency is per request: several in flight (each retried on its own)
        with ThreadPoolExecutor(min(_PARALLEL_PUTS, len(items))) as pool:
            return sum(pool.map(lambda item: self.put(*item), items))

    def sync(self) -> None:
        """Nothing to do: every put is durable when it returns."""

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            data: bytes = self._call(f"read {key!r}", lambda: self.fs.cat_file(path))
            return data
        except FileNotFoundError as exc:
            raise NotFoundError(f"artifact {key!r} not found in {redact(self.url)}") from exc

    def exists(self, key: str) -> bool:
        path = self._path(key)
        return self._call(f"look up {key!r}", lambda: self._isfile(path))

    def _isfile(self, path: str) -> bool:
        # not fs.isfile/exists: fsspec's answer "no" to any error would hide an outage
        try:
            return bool(self.fs.info(path).get("type") == "file")
        except FileNotFoundError:
            return False

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root

        def find() -> list[str]:
            try:
                return list(self.fs.find(base))
            except FileNotFoundError:
                return []

        root = self.root.strip("/")
        for path in self._call(f"list {prefix or '/'!r}", find):
            rel = path.strip("/")[len(root) :].lstrip("/")
            if not posixpath.basename(rel).startswith(".tmp-"):
                yield rel


def _endpoint(fs: Any) -> str:
    """host:port of an S3 filesystem's endpoint (never credentials), for error messages."""
    try:  # the client's, once it exists: it knows endpoints set in an AWS profile too
        url = str(fs.s3.meta.endpoint_url)
    except Exception:
        url = getattr(fs, "endpoint_url", None) or "https://s3.amazonaws.com"
    parts = urlsplit(url)
    host = parts.hostname or url
    return f"{host}:{parts.port}" if parts.port else host


@functools.cache
def _transient_types() -> tuple[type[BaseException], ...]:
    """Errors that say the connection, not the request, failed (drivers imported if present)."""
    from fsspec.exceptions import FSTimeoutError

    found: list[type[BaseException]] = [ConnectionError, TimeoutError, FSTimeoutError]
    try:
        from botocore import exceptions as boto
        from botocore.parsers import ResponseParserError

        found += [boto.ConnectionError, boto.HTTPClientError, ResponseParserError]
    except ImportError:
        pass
    try:
        import aiohttp

        found += [aiohttp.ClientConnectionError, aiohttp.ClientPayloadError]
    except ImportError:
        pass
    return tuple(found)


def transient(exc: BaseException) -> bool:
    """A failure worth retrying: a lost connection, a timeout, throttling or a 5xx answer."""
    seen: BaseException | None = exc
    for _ in range(4):  # the error itself and the driver errors it was raised from
        if seen is None:
            return False
        if isinstance(seen, _transient_types()):
            return True
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _RETRY_CODES or (isinstance(status, int) and status in _RETRY_STATUS):
                return True
        seen = seen.__cause__ or seen.__context__
    return False
