"""The model a running service serves, following a registry alias.

A poll thread (or an explicit ``reload``) notices the alias moved, loads and verifies the new
bundle beside the old one, and swaps a single reference: requests already holding the old
Predictor finish on it. A bundle that fails to load or verify leaves the old model serving and
is reported in ``last_error`` and a metric.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from kennel.config import KennelConfig
from kennel.errors import KennelError, NotFoundError
from kennel.imaging import DEFAULT_MAX_PIXELS
from kennel.registry.store import ModelRegistry
from kennel.serve.runtime import Bundle, Predictor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Swap:
    old: int | None
    new: int


class ModelHolder:
    @classmethod
    def following(cls, registry: ModelRegistry, config: KennelConfig, env: str) -> ModelHolder:
        """A holder of the alias environment ``env`` serves, with kennel.yaml's settings."""
        s = config.serve
        return cls(
            registry,
            config.model.name,
            config.environment(env).alias,
            poll_s=s.poll_s,
            prefer_int8=s.prefer_int8,
            max_pixels=s.max_pixels,
        )

    def __init__(
        self,
        registry: ModelRegistry,
        model: str,
        alias: str,
        *,
        poll_s: float = 1.0,
        prefer_int8: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        on_swap: Callable[[Swap], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.model = model
        self.alias = alias
        self.poll_s = poll_s
        self.prefer_int8 = prefer_int8
        self.max_pixels = max_pixels
        self.on_swap = on_swap
        self.on_error = on_error
        self.current: Predictor | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._poll, name="kennel-alias", daemon=True)

    def load(self, version: int) -> Predictor:
        entry = self.registry.resolve(f"{self.model}@{version}")
        files = {name: self.registry.read_file(entry, name) for name in entry.files}
        bundle = Bundle.from_files(files, prefer_int8=self.prefer_int8)
        if bundle.version != version or bundle.name != self.model:
            raise KennelError(f"bundle says {bundle.name}@{bundle.version}, expected {version}")
        return Predictor(bundle, max_pixels=self.max_pixels)

    def reload(self) -> Swap | None:
        """Check the alias now; swap if it moved. Errors keep the old model and are reported."""
        with self._lock:
            try:
                target = self.registry.resolve(f"{self.model}@{self.alias}").version
            except NotFoundError as exc:  # nothing released yet: a normal state, not a failure
                self.last_error = f"alias not set: {exc}"
                log.info(self.last_error)
                return None
            except KennelError as exc:  # database down: keep serving what we have
                self._fail(f"cannot read alias: {exc}")
                return None
            old = self.current.version if self.current else None
            if target == old:
                return None
            try:
                predictor = self.load(target)
            except (KennelError, ValueError, OSError) as exc:
                self._fail(f"cannot load {self.model}@{target}: {exc}")
                return None
            self.current = predictor  # the atomic swap
            self.last_error = None
            swap = Swap(old, target)
            log.info("now serving %s@%s (was %s)", self.model, target, old)
            if self.on_swap:
                self.on_swap(swap)
            return swap

    def _fail(self, message: str) -> None:
        self.last_error = message
        log.warning(message)
        if self.on_error:
            self.on_error(message)

    def start(self) -> None:
        self.reload()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.reload()
