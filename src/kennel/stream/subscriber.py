"""The consuming side of pattern 3: follow a model feed and hot-load what it announces.

Every announcement is checked before it is loaded: the manifest's Ed25519 signature, then each
file against the manifest's sha256, then the bundle's own metadata hashes, then ONNX Runtime
must load it. A stale announcement (sequence not newer than the highest one accepted) or a
tampered or unloadable one is refused and recorded; the model already running keeps serving.

The highest accepted sequence is written (atomically, before the swap) to ``state_dir``, so a
restarted subscriber still refuses an old signed announcement that someone re-added to the
stream: without it, a restart would make the replayed release the newest thing it had seen (a
downgrade). After a restart only the announcement it last accepted may be loaded again at that
same sequence (matched by the manifest's sha256).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kennel.errors import ConfigError, KennelError, ReleaseRefusedError
from kennel.fsutil import write_atomic
from kennel.imaging import DEFAULT_MAX_PIXELS
from kennel.serve.runtime import Bundle, Predictor
from kennel.stream.feed import FILE_PREFIX, Feed, Manifest, raw_name
from kennel.stream.signing import verify

log = logging.getLogger(__name__)

STATE_FILE = "feed-sequence.json"
# Refusals kept for ``GET /v1/model``: anyone who may write to the stream can add entries
# without end, so only the most recent ones are kept (``rejected_total`` counts them all).
KEEP_REJECTED = 50


class Refused(ReleaseRefusedError):
    """An announcement that must not be loaded; ``str()`` says why."""


@dataclass(frozen=True)
class Rejection:
    entry: str
    reason: str


@dataclass(frozen=True)
class Loaded:
    entry: str
    name: str
    version: int
    seq: int


class ModelSubscriber:
    def __init__(
        self,
        feed: Feed,
        public_key: Ed25519PublicKey,
        *,
        name: str | None = None,
        alias: str | None = None,
        block_ms: int = 1000,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        prefer_int8: bool = True,
        state_dir: Path | None = None,
        on_load: Callable[[Loaded], None] | None = None,
        on_reject: Callable[[Rejection], None] | None = None,
    ) -> None:
        """``state_dir`` keeps the highest accepted sequence across restarts; without it (tests,
        benchmarks) replays are refused only while this object lives. A refusal is reported
        once: to ``on_reject`` when given, else as a warning in the log."""
        self.feed = feed
        self.public_key = public_key
        self.name = name
        self.alias = alias
        self.block_ms = block_ms
        self.max_pixels = max_pixels
        self.prefer_int8 = prefer_int8  # as a service does (serve.prefer_int8)
        self.on_load = on_load
        self.on_reject = on_reject
        self.current: Predictor | None = None
        self.state_path = state_dir / STATE_FILE if state_dir is not None else None
        self.seq, self._accepted = self._read_state()  # sequence, sha256 of its manifest
        self.last_id = "0-0"
        self.last_error: str | None = None
        self.loaded: list[Loaded] = []
        self.rejected: list[Rejection] = []  # the KEEP_REJECTED most recent, oldest first
        self.rejected_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kennel-feed", daemon=True)

    # -- checks -------------------------------------------------------------------------------
    def check(self, fields: dict[str, bytes]) -> tuple[Manifest, Predictor]:
        """The manifest and a ready Predictor, or Refused naming the problem."""
        for name in fields:
            raw = raw_name(name)
            if raw is not None:  # written by another client: its bytes, never a guess at them
                raise Refused(f"field {raw!r} is not UTF-8 text: not a model announcement")
        payload, signature = fields.get("manifest"), fields.get("signature")
        if payload is None or signature is None:
            raise Refused("not a model announcement (no manifest or signature)")
        if not verify(self.public_key, signature, payload):
            raise Refused("bad signature: not signed by the publisher's key, or edited")
        try:
            manifest = Manifest(**json.loads(payload))
        except (ValueError, TypeError) as exc:
            raise Refused(f"unreadable manifest: {exc}") from exc
        if self.name and manifest.name != self.name:
            raise Refused(f"for model {manifest.name}, not {self.name}")
        if self.alias and manifest.alias != self.alias:
            raise Refused(f"for alias {manifest.alias}, not {self.alias}")
        resumed = (
            self.current is None
            and manifest.seq == self.seq
            and hashlib.sha256(payload).hexdigest() == self._accepted
        )
        if manifest.seq <= self.seq and not resumed:
            raise Refused(f"stale: sequence {manifest.seq} is not newer than {self.seq}")
        files = {
            k.removeprefix(FILE_PREFIX): v for k, v in fields.items() if k.startswith(FILE_PREFIX)
        }
        if set(files) != set(manifest.files):
            raise Refused("the files do not match the signed manifest")
        for file, digest in manifest.files.items():
            if hashlib.sha256(files[file]).hexdigest() != digest:
                raise Refused(f"tampered: {file} does not match its signed sha256")
        try:
            bundle = Bundle.from_files(files, prefer_int8=self.prefer_int8)
        except (KennelError, ValueError) as exc:
            raise Refused(f"bundle does not verify: {exc}") from exc
        if (bundle.name, bundle.version) != (manifest.name, manifest.version):
            raise Refused(f"bundle is {bundle.name}@{bundle.version}, manifest says otherwise")
        try:
            return manifest, Predictor(bundle, max_pixels=self.max_pixels)
        except Exception as exc:  # ONNX Runtime raises its own classes for a graph it refuses
            raise Refused(f"cannot be loaded: {' '.join(str(exc).split())[:300]}") from exc

    def apply(self, entry: str, fields: dict[str, bytes]) -> bool:
        """Check one announcement and swap to it; False (and a recorded reason) if refused."""
        try:
            manifest, predictor = self.check(fields)
            self._write_state(manifest, fields["manifest"])  # before the swap: never run unrecorded
        except Refused as exc:
            rejection = Rejection(entry, str(exc))
            # a new list, never one changed in place: /v1/model reads it from another thread
            self.rejected = [*self.rejected[1 - KEEP_REJECTED :], rejection]
            self.rejected_total += 1
            if self.on_reject:
                self.on_reject(rejection)
            else:
                log.warning("refused feed entry %s: %s", entry, exc)
            return False
        self.current = predictor  # the atomic swap; in-flight calls finish on the old one
        loaded = Loaded(entry, manifest.name, manifest.version, manifest.seq)
        self.loaded.append(loaded)
        log.info("loaded %s@%s from feed entry %s", manifest.name, manifest.version, entry)
        if self.on_load:
            self.on_load(loaded)
        return True

    # -- the highest accepted sequence, kept across restarts ----------------------------------
    def _read_state(self) -> tuple[int, str | None]:
        if self.state_path is None or not self.state_path.exists():
            return 0, None
        try:
            state = json.loads(self.state_path.read_bytes())
            if not isinstance(state, dict):
                raise TypeError(f"it holds a JSON {type(state).__name__}, not an object")
            seq, digest = state["seq"], state["manifest_sha256"]
            if type(seq) is not int or seq < 0:  # not a bool, a float, 1e400 or a negative
                raise ValueError(f"its seq {seq!r} is no sequence number")
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError(f"its manifest_sha256 {str(digest)[:70]!r} is no sha256")
            return seq, digest
        except (OSError, ValueError, TypeError, KeyError) as exc:
            # fail closed: without it, any old signed announcement would look new
            why = f"it has no {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
            raise ConfigError(f"unreadable feed state {self.state_path}: {why}") from exc

    def _write_state(self, manifest: Manifest, payload: bytes) -> None:
        digest = hashlib.sha256(payload).hexdigest()
        if self.state_path is not None:
            state = {
                "seq": manifest.seq,
                "manifest_sha256": digest,
                "name": manifest.name,
                "version": manifest.version,
                "alias": manifest.alias,
            }
            try:
                write_atomic(self.state_path, json.dumps(state, indent=2).encode())
            except OSError as exc:
                raise Refused(f"cannot record sequence {manifest.seq}: {exc}") from exc
        self.seq, self._accepted = manifest.seq, digest

    # -- following the stream -----------------------------------------------------------------
    def catch_up(self) -> None:
        """Load the valid announcement with the highest signed sequence already on the
        stream, of every entry it keeps: the newest entry may be an old announcement added
        again (a replay), and the newest ones may all be junk someone added after it."""
        # every entry kept, in one read (it waits 1 ms when there is none), newest first
        entries = self.feed.read("0-0", 1)[::-1]
        if entries:
            self.last_id = entries[0][0]
        ranked = sorted(entries, key=lambda e: self._signed_seq(e[1]), reverse=True)  # stable
        for entry, fields in ranked:
            if self.apply(entry, fields):
                return

    def _signed_seq(self, fields: dict[str, bytes]) -> int:
        """The sequence an entry's manifest claims, if its signature holds (-1 otherwise)."""
        payload, signature = fields.get("manifest"), fields.get("signature")
        if payload is None or signature is None or not verify(self.public_key, signature, payload):
            return -1
        try:
            return int(json.loads(payload)["seq"])
        except (ValueError, TypeError, KeyError):
            return -1

    def poll_once(self) -> int:
        entries = self.feed.read(self.last_id, self.block_ms)
        for entry, fields in entries:
            self.last_id = entry
            self.apply(entry, fields)
        return len(entries)

    def start(self) -> None:
        try:
            self.catch_up()
        except KennelError as exc:
            self.last_error = str(exc)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.block_ms / 1000 + 5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
                self.last_error = None
            except KennelError as exc:  # the stream is down: keep serving, retry
                self.last_error = str(exc)
                log.warning("model feed unavailable: %s", exc)
                time.sleep(1.0)
            except Exception as exc:  # a bug must not stop the feed being followed
                self.last_error = f"{exc.__class__.__name__}: {exc}"
                log.exception("model feed loop failed; retrying")
                time.sleep(1.0)
