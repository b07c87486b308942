"""Where the prediction log's rows end up: kept input images in the artifact store first, then
the rows in the metadata store, so that a logged row never lacks its input."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kennel.db.predictions import InputRejection, LoggedPrediction, PredictionStore
from kennel.errors import KennelError, StorageError
from kennel.storage import ContentStore

log = logging.getLogger(__name__)
REJECTION = "rejection"


@dataclass
class LogStats:
    queued: int = 0  # records handed to the log
    written: int = 0  # records written to the database
    spooled: int = 0  # records kept on disk because a database write failed
    replayed: int = 0  # records written after such a failure, or adopted from a dead process
    db_errors: int = 0  # failed writes to the database
    store_errors: int = 0  # failed uploads of kept inputs to the artifact store


class RowWriter:
    def __init__(
        self, store: PredictionStore, inputs: ContentStore | None, stats: LogStats
    ) -> None:
        self.store = store
        self.inputs = inputs  # where kept input images go (content-addressed), if anywhere
        self.stats = stats

    def write(self, rows: list[dict[str, Any]]) -> bool:
        """Write ``rows`` (predictions and rejections); False when a store refused them."""
        try:
            predictions = [r for r in rows if r.get("kind") != REJECTION]
            rejections = [
                InputRejection(r["at"], r["environment"], r["source"], r["reason"])
                for r in rows
                if r.get("kind") == REJECTION
            ]
            if self.inputs is not None and not self._upload(predictions):
                return False
            self.store.add_many(
                [LoggedPrediction(**{k: v for k, v in r.items() if k != "input"})
                 for r in predictions],
                rejections,
            )  # fmt: skip
            return True
        except (KennelError, OSError, KeyError, TypeError) as exc:  # a bad line: keep it too
            self.stats.db_errors += 1
            log.warning("prediction log: database unavailable (%s); keeping the journal", exc)
            return False

    def _upload(self, predictions: list[dict[str, Any]]) -> bool:
        """One durable batch (one filesystem sync), not two fsyncs per image."""
        assert self.inputs is not None
        try:
            self.inputs.put_many([r["input"] for r in predictions if r.get("input")])
            return True
        except StorageError as exc:
            self.stats.store_errors += 1
            log.warning("prediction log: artifact store unavailable (%s); keeping the journal", exc)
            return False
