"""Pattern 3, the model published as data: signed bundles on a stream.

A message carries the bundle's files, a manifest (name, version, alias, sequence number, the
sha256 of every file) and an Ed25519 signature of the manifest. Subscribers check the signature,
then every file against the manifest, and only then load; a sequence number not newer than the
one they run is stale (a replay) and ignored. The transport is a small interface of three
methods (:class:`Feed`: publish, read after an entry id, the latest entries); Redis Streams
implements it here, :class:`kennel.stream.memfeed.MemoryFeed` within one process, and Kafka or
NATS JetStream would fit the same three methods.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kennel.display import redact
from kennel.errors import ConfigError, ServiceError
from kennel.registry.store import ModelRegistry

FILE_PREFIX = "file:"


class Feed(Protocol):
    """An append-only stream of entries, each a non-empty mapping of field names to bytes under
    an id ``"<milliseconds>-<sequence>"``; ids only grow, and ``"0-0"`` is before every entry.
    Old entries may be trimmed, the newest ones are kept. A transport failure, an empty entry,
    a field name that is not UTF-8 text or an argument the stream refuses (a malformed id, a
    count under 1) is a ``ServiceError``. A field name another client wrote that is not UTF-8
    is read back with its bytes as surrogate escapes (see :func:`raw_name`), never garbled or
    a crash: what reads it refuses that entry. ``tests/stream/test_feed_contract.py`` holds
    every implementation to this."""

    def publish(self, fields: Mapping[str, bytes]) -> str:
        """Append ``fields`` as the newest entry; its id, greater than every earlier one."""
        ...

    def read(self, after: str, block_ms: int) -> list[tuple[str, dict[str, bytes]]]:
        """Every entry kept whose id is greater than ``after``, oldest first. When there is
        none, wait up to ``block_ms`` for one (``0``: wait until one is published) and return
        what arrived, or ``[]``."""
        ...

    def latest(self, count: int) -> list[tuple[str, dict[str, bytes]]]:
        """The ``count`` newest entries (fewer if fewer are kept), newest first."""
        ...


class RedisFeed:
    """A Redis Stream (XADD / XREAD / XREVRANGE), trimmed to ``maxlen`` entries.

    Every call but a long blocking read fails with a ``ServiceError`` when Redis has not
    answered within ``timeout_s``. A read asked to wait longer than half of it gets a client
    whose socket waits ``timeout_s`` more than the read (``block_ms=0``: no timeout at all, so
    only a closed connection ends it), kept for later reads: one per power of two seconds."""

    def __init__(self, url: str, stream: str, *, maxlen: int = 50, timeout_s: float = 10) -> None:
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.timeout_s = timeout_s
        self.client = self._connect(timeout_s)
        self._waiting: dict[int, redis.Redis] = {}  # seconds waited, a power of 2 or 0 (forever)
        self._lock = threading.Lock()

    def _connect(self, timeout_s: float | None) -> redis.Redis:
        try:
            return redis.Redis.from_url(
                self.url,
                socket_timeout=timeout_s,
                socket_connect_timeout=min(3, self.timeout_s),
                socket_keepalive=True,  # the kernel notices a peer gone silent under a long wait
            )
        except ValueError as exc:  # a URL redis-py cannot parse: one line, before any model
            # redis-py's words may quote a piece of a password that holds a "/"
            why = "not a URL redis-py can read" if "@" in self.url else redact(str(exc))
            raise ConfigError(
                f"the feed URL {redact(self.url)!r}: {why}; use redis://HOST:PORT/DB"
            ) from None

    def _client_for(self, block_ms: int) -> redis.Redis:
        """The client whose socket outwaits a read blocking ``block_ms``."""
        if block_ms < 0 or 0 < block_ms <= 500 * self.timeout_s:  # Redis refuses block_ms < 0
            return self.client
        seconds = 1 << (math.ceil(block_ms / 1000) - 1).bit_length() if block_ms else 0
        with self._lock:
            if seconds not in self._waiting:
                timeout = seconds + self.timeout_s if seconds else None
                self._waiting[seconds] = self._connect(timeout)
            return self._waiting[seconds]

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise ServiceError(
                f"cannot {what} {self.stream} at {redact(self.url)}: {redact(str(exc))}"
            ) from exc

    def publish(self, fields: Mapping[str, bytes]) -> str:
        check_names(fields)
        with self._guard("publish to"):
            entry = self.client.xadd(self.stream, dict(fields), maxlen=self.maxlen)  # type: ignore[arg-type]
        return _text(entry)

    def read(self, after: str, block_ms: int) -> list[tuple[str, dict[str, bytes]]]:
        with self._guard("read"):
            answer: Any = self._client_for(block_ms).xread({self.stream: after}, block=block_ms)
        return [(_text(i), _fields(f)) for _stream, entries in answer or [] for i, f in entries]

    def latest(self, count: int) -> list[tuple[str, dict[str, bytes]]]:
        with self._guard("read"):
            entries: Any = self.client.xrevrange(self.stream, count=count)
        return [(_text(i), _fields(f)) for i, f in entries]

    def close(self) -> None:
        with self._lock:
            waiting, self._waiting = list(self._waiting.values()), {}
        for client in [self.client, *waiting]:
            client.close()


def _text(value: object, errors: str = "strict") -> str:
    return value.decode(errors=errors) if isinstance(value, bytes) else str(value)


def _fields(raw: Mapping[object, object]) -> dict[str, bytes]:
    # a name that is not UTF-8 keeps its bytes (surrogate escapes) for the reader to refuse
    return {
        _text(k, "surrogateescape"): v if isinstance(v, bytes) else str(v).encode()
        for k, v in raw.items()
    }


def raw_name(name: str) -> bytes | None:
    """The bytes of a field name read back that is not UTF-8 text; None for one that is."""
    try:
        name.encode()
    except UnicodeEncodeError:
        try:
            return name.encode(errors="surrogateescape")
        except UnicodeEncodeError:  # a surrogate that no bytes read back could give
            return name.encode(errors="backslashreplace")
    return None


def check_names(fields: Mapping[str, bytes]) -> None:
    """Refuse (``ServiceError``) an entry whose field names are not all UTF-8 text: a reader
    could not tell them apart from bytes garbled on the way."""
    for name in fields:
        if not isinstance(name, str) or raw_name(name) is not None:
            raise ServiceError(f"cannot publish field {name!r}: a field name must be UTF-8 text")


@dataclass(frozen=True)
class Manifest:
    name: str
    version: int
    alias: str
    seq: int  # microseconds since the epoch at publication: newer releases, larger numbers
    files: dict[str, str]  # file name -> sha256

    def payload(self) -> bytes:
        """The canonical bytes that are signed."""
        return json.dumps(self.__dict__, sort_keys=True, separators=(",", ":")).encode()


def message(
    files: Mapping[str, bytes],
    *,
    name: str,
    version: int,
    alias: str,
    key: Ed25519PrivateKey,
    at: datetime | None = None,
) -> dict[str, bytes]:
    """The stream fields announcing ``name@version`` as the model behind ``alias``."""
    seq = int((at or datetime.now(UTC)).timestamp() * 1_000_000)
    manifest = Manifest(
        name, version, alias, seq, {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    )
    payload = manifest.payload()
    fields = {"manifest": payload, "signature": key.sign(payload)}
    fields.update({FILE_PREFIX + n: d for n, d in files.items()})
    return fields


def publish_version(
    feed: Feed, registry: ModelRegistry, ref: str, alias: str, key: Ed25519PrivateKey
) -> str:
    """Announce the registered ``ref`` as the model behind ``alias``; returns the entry id."""
    model = registry.resolve(ref)
    files = {name: registry.read_file(model, name) for name in model.files}
    fields = message(files, name=model.name, version=model.version, alias=alias, key=key)
    return feed.publish(fields)
