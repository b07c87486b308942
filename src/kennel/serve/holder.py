"""The model a running service serves, following a registry alias.

A poll thread (or an explicit ``reload``) notices the alias moved, loads and verifies the new
bundle beside the old one, and swaps a single reference: requests already holding the old
Predictor finish on it. A bundle that fails to load or verify, for any reason (a bad hash, or a
hash-valid ONNX file ONNX Runtime refuses), leaves the old model serving and is reported in
``last_error`` and a metric. The poll thread outlives every failure: it must keep following the
alias, or the next good release would never be picked up. A version that failed is retried only
after ``RETRY_FAILED_S`` (or at once on an explicit reload), not on every poll.

Replicas each follow the alias on their own, so that all of them serve a move within ``poll_s``
(polls run at a fixed rate, however long a check took) the swap itself must cost nothing: a
holder keeps the version it served before loaded (a rollback is a reference swap), and a holder
given a ``warm`` alias (``following`` gives every environment but staging staging's alias) loads
that alias's version in the background, ahead of its release. At most three Predictors (current,
previous, upcoming) are held.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from kennel.config import KennelConfig
from kennel.errors import KennelError, NotFoundError, UnloadableModelError
from kennel.imaging import DEFAULT_MAX_PIXELS
from kennel.registry.store import ModelRegistry
from kennel.serve.runtime import Bundle, Predictor

log = logging.getLogger(__name__)

RETRY_FAILED_S = 10.0
T = TypeVar("T")


class LoadFailed(UnloadableModelError):
    """The alias points at a version that cannot be loaded; the previous model keeps serving."""


@dataclass(frozen=True)
class Swap:
    old: int | None
    new: int


class ModelHolder:
    @classmethod
    def following(cls, registry: ModelRegistry, config: KennelConfig, env: str) -> ModelHolder:
        """A holder of the alias environment ``env`` serves, with kennel.yaml's settings."""
        s = config.serve
        alias = config.environment(env).alias
        staging = config.environments.get(config.release.staging)
        return cls(
            registry,
            config.model.name,
            alias,
            poll_s=s.poll_s,
            prefer_int8=s.prefer_int8,
            max_pixels=s.max_pixels,
            warm=staging.alias if staging and staging.alias != alias else None,
        )

    def __init__(
        self,
        registry: ModelRegistry,
        model: str,
        alias: str,
        *,
        poll_s: float = 1.0,
        prefer_int8: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        on_swap: Callable[[Swap], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        warm: str | None = None,
    ) -> None:
        self.registry = registry
        self.model = model
        self.alias = alias
        self.poll_s = poll_s
        self.prefer_int8 = prefer_int8
        self.max_pixels = max_pixels
        self.on_swap = on_swap
        self.on_error = on_error
        self.warm = warm  # an alias whose version is loaded ahead: the next release
        self.current: Predictor | None = None
        self.previous: Predictor | None = None  # what a rollback returns to
        self.upcoming: Predictor | None = None  # the warm alias's version
        self.last_error: str | None = None
        self.unset = False  # the followed alias names no version (nothing released yet)
        self._failed: tuple[int, float] | None = None  # (version, when) of the last failed load
        self._warm_failed: tuple[int, float] | None = None  # the same, for the warm alias
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._poll, name="kennel-alias", daemon=True)

    def load(self, version: int) -> Predictor:
        entry = self.registry.resolve(f"{self.model}@{version}")
        if not entry.gates_passed:  # however the alias got there (kennel.yaml edits included)
            raise UnloadableModelError(
                f"{entry.ref} failed its quality gates; a service does not serve it"
            )
        files = {name: self.registry.read_file(entry, name) for name in entry.files}
        bundle = Bundle.from_files(files, prefer_int8=self.prefer_int8)
        if bundle.version != version or bundle.name != self.model:
            raise KennelError(f"bundle says {bundle.name}@{bundle.version}, expected {version}")
        return Predictor(bundle, max_pixels=self.max_pixels)

    def reload(self) -> Swap | None:
        """Check the alias now; swap if it moved. Raises LoadFailed (already counted and logged)
        when the alias's version cannot be loaded; the old model keeps serving. An alias that
        cannot be read is reported in ``last_error``, as the poll thread does."""
        return self._check(retry_failed=True, raise_failed=True)

    def poll(self) -> Swap | None:
        """One check as the poll thread makes it: never raises, whatever goes wrong."""
        try:
            return self._check(retry_failed=False, raise_failed=False)
        except Exception as exc:  # a bug here must not stop alias following
            self._fail(f"alias check failed: {exc.__class__.__name__}: {_one_line(exc)}")
            return None
        finally:
            self._warm_up()

    def _held(self, version: int) -> Predictor | None:
        return next(
            (p for p in (self.current, self.previous, self.upcoming) if p and p.version == version),
            None,
        )

    def _warm_up(self) -> None:
        """Load the warm alias's version ahead of its release. Failing here is not serving's
        failure (that version may never be released): it is logged, and retried only after
        RETRY_FAILED_S, as a failed load of the followed alias is."""
        if self.warm is None:
            return
        with self._lock:
            try:
                target = self.registry.resolve(f"{self.model}@{self.warm}").version
            except KennelError:  # not set, or the database is down: the next poll tries again
                return
            if self._held(target) is not None or self._recently_failed(target, self._warm_failed):
                return
            try:
                self.upcoming = self.load(target)
            except Exception as exc:  # ONNX Runtime raises its own classes
                self._warm_failed = (target, time.monotonic())
                log.info("not preloading %s@%s: %s", self.model, target, _one_line(exc))

    def _check(self, *, retry_failed: bool, raise_failed: bool) -> Swap | None:
        with self._lock:
            try:
                target = self.registry.resolve(f"{self.model}@{self.alias}").version
            except NotFoundError as exc:  # nothing released yet: a normal state, not a failure
                self.last_error = f"alias not set: {exc}"
                self.unset = True
                log.info(self.last_error)
                return None
            except KennelError as exc:  # database down: keep serving what we have
                self._fail(f"cannot read alias: {exc}")
                return None
            self.unset = False
            old = self.current.version if self.current else None
            if target == old:
                self._failed = None
                return None
            if not retry_failed and self._recently_failed(target, self._failed):
                return None  # already counted and logged; the alias has not moved since
            try:
                predictor = self._held(target) or self.load(target)
            except Exception as exc:  # ONNX Runtime raises its own classes
                self._failed = (target, time.monotonic())
                message = f"cannot load {self.model}@{target}: {_one_line(exc)}"
                self._fail(message)
                if raise_failed:
                    serving = f"still serving version {old}" if old else "nothing is served"
                    raise LoadFailed(f"{message}; {serving}") from exc
                return None
            self.previous, self.current = self.current, predictor  # the atomic swap
            if self.upcoming is predictor:
                self.upcoming = None
            self.last_error = None
            self._failed = None
            swap = Swap(old, target)
            log.info("now serving %s@%s (was %s)", self.model, target, old)
            if self.on_swap:
                _call(self.on_swap, swap)
            return swap

    def _recently_failed(self, version: int, failed: tuple[int, float] | None) -> bool:
        if failed is None or failed[0] != version:
            return False
        return time.monotonic() - failed[1] < max(RETRY_FAILED_S, self.poll_s)

    def _fail(self, message: str) -> None:
        self.last_error = message
        log.warning(message)
        if self.on_error:
            _call(self.on_error, message)

    def start(self) -> None:
        self.poll()  # an unloadable first version leaves the service not ready, not crashed
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _poll(self) -> None:
        due = time.monotonic()
        while True:  # a fixed rate: a slow check does not push the next one back
            due = max(due + self.poll_s, time.monotonic())
            if self._stop.wait(due - time.monotonic()):
                return
            self.poll()


def _call(callback: Callable[[T], None], value: T) -> None:
    """A listener's failure is logged, never allowed to undo a swap or stop the poll thread."""
    try:
        callback(value)
    except Exception:
        log.exception("listener %r failed", callback)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if len(text) <= 300 else text[:297] + "..."
