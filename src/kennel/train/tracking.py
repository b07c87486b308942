"""Tracked runs in the metadata store: params, per-epoch metrics, status and duration."""

from __future__ import annotations

import re
import time
import uuid
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from kennel.db import Database
from kennel.db.runs import Run as Run
from kennel.db.runs import RunMetric, RunStore
from kennel.errors import AmbiguousRefError, NotFoundError

if TYPE_CHECKING:  # reading runs (the dashboard, lineage) must not load PyTorch
    from kennel.train.results import EpochStats


class RunTracker:
    """Starts, logs and finishes runs. A run it starts or reopens holds its claim (see
    ``RunStore.claim``) until it finishes here or this process dies."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.store = RunStore(db)
        self._claims: dict[str, ExitStack] = {}

    def _claim(self, run_id: str) -> None:
        for _try in range(20):  # a reader's look holds it for an instant
            claim = ExitStack()
            if claim.enter_context(self.store.claim(run_id)):
                self._claims[run_id] = claim
                return
            claim.close()
            time.sleep(0.01)

    def _let_go(self, run_id: str) -> None:
        claim = self._claims.pop(run_id, None)
        if claim is not None:
            claim.close()

    def start(
        self,
        *,
        kind: str,
        dataset: str,
        dataset_version: str,
        params: dict[str, Any],
        study: str | None = None,
        trial_number: int | None = None,
        git_commit: str | None = None,
        init_from: str | None = None,
        actor: str = "kennel",
    ) -> str:
        run_id = uuid.uuid4().hex
        self._claim(run_id)  # before the row: no look ever sees it running unheld
        try:
            self.store.start(
                run_id=run_id,
                kind=kind,
                dataset=dataset,
                dataset_version=dataset_version,
                params=params,
                study=study,
                trial_number=trial_number,
                git_commit=git_commit,
                init_from=init_from,
                actor=actor,
            )
        except BaseException:
            self._let_go(run_id)
            raise
        return run_id

    def log_epoch(self, run_id: str, epoch: int, values: dict[str, float]) -> None:
        self.store.log_metrics(
            [RunMetric(run_id, epoch, name, float(value)) for name, value in values.items()]
        )

    def log_stats(self, run_id: str, stats: EpochStats) -> None:
        self.log_epoch(
            run_id,
            stats.epoch,
            {
                "train_loss": stats.train_loss,
                "val_loss": stats.val_loss,
                "val_accuracy": stats.val_accuracy,
                "images_per_s": stats.images_per_s,
                "lr": stats.lr,
            },
        )

    def finish(self, run_id: str, status: str, metrics: dict[str, Any] | None = None) -> None:
        try:
            self.store.finish(run_id, status, metrics or {})
        finally:
            self._let_go(run_id)

    def find(self, ref: str) -> Run:
        """A run by its id or a unique prefix of it (``kennel runs list`` shows 12 digits)."""
        run = self.store.get(ref)
        if run is not None:
            return run
        if not re.fullmatch(r"[0-9a-f]{4,32}", ref):
            raise NotFoundError(f"run {ref!r} not found (give its id or 4+ of its first digits)")
        ids = self.store.ids_starting(ref)
        if not ids:
            raise NotFoundError(f"run {ref!r} not found")
        if len(ids) > 1:
            more = "+" if len(ids) == 5 else ""
            raise AmbiguousRefError(
                f"run {ref!r} is ambiguous: it begins {len(ids)}{more} runs "
                f"({', '.join(ids)}); give more digits"
            )
        return self.get(ids[0])

    def reopen(self, run_id: str) -> None:
        self._claim(run_id)
        try:
            self.store.reopen(run_id)
        except BaseException:
            self._let_go(run_id)
            raise

    def get(self, run_id: str) -> Run:
        run = self.store.get(run_id)
        if run is None:
            raise NotFoundError(f"run {run_id!r} not found")
        return run

    def epochs(self, run_id: str) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for m in self.store.metrics(run_id):
            out.setdefault(m.epoch, {})[m.name] = m.value
        return dict(sorted(out.items()))

    def runs(
        self,
        *,
        study: str | None = None,
        dataset_version: str | None = None,
        kind: str | None = None,
        status: str | None = None,
    ) -> list[Run]:
        return self.store.runs(
            study=study, dataset_version=dataset_version, kind=kind, status=status
        )
