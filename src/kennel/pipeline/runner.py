"""``kennel pipeline run``: ingest (optional) -> build, each step skipped when its inputs are
unchanged. A step's key is the digest of everything it depends on; its output is stored under
that key once the step has finished, so an interrupted pipeline re-runs only what was not done
(and the training step itself resumes from its checkpoint)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from kennel import __version__
from kennel.config import KennelConfig
from kennel.db import Database
from kennel.db.schema import PipelineStepRow
from kennel.errors import NotFoundError
from kennel.ingest.run import Ingestor
from kennel.ingest.sources import Source
from kennel.pipeline.build import Builder, BuildOptions
from kennel.progress import Event, Progress, silent
from kennel.registry.store import ModelRegistry


def step_key(step: str, inputs: dict[str, Any]) -> str:
    body = json.dumps({"step": step, "kennel": __version__, **inputs}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def source_fingerprint(source: Source) -> str:
    """Names, sizes and modification times of what the source lists (cheap: no bytes read)."""
    digest = hashlib.sha256(source.describe().encode())
    for entry in source.scan().entries:
        path = entry.uri.split("::")[-1]
        try:
            st = os.stat(path)
            digest.update(f"{entry.uri}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{entry.uri}\n".encode())
    return digest.hexdigest()


class PipelineRunner:
    def __init__(
        self,
        *,
        config: KennelConfig,
        db: Database,
        ingestor: Ingestor,
        builder: Builder,
        registry: ModelRegistry,
    ) -> None:
        self.config = config
        self.db = db
        self.ingestor = ingestor
        self.builder = builder
        self.registry = registry

    def _done(self, key: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            row = s.get(PipelineStepRow, key)
            return dict(row.output) if row else None

    def _record(self, key: str, step: str, output: dict[str, Any]) -> None:
        with self.db.session() as s:
            s.merge(
                PipelineStepRow(key=key, step=step, output=output, created_at=datetime.now(UTC))
            )

    def run(
        self,
        *,
        dataset: str,
        source: Source | None,
        options: BuildOptions,
        force: bool = False,
        progress: Progress = silent,
    ) -> dict[str, Any]:
        steps: list[dict[str, Any]] = []

        def say(message: str) -> None:
            progress(Event("pipeline", message))

        if source is not None:
            key = step_key(
                "ingest",
                {
                    "dataset": dataset,
                    "source": source_fingerprint(source),
                    "data": self.config.data.model_dump(),
                },
            )
            done = None if force else self._done(key)
            if done is not None:
                say(f"ingest: skipped, source unchanged since {done['version']}")
                steps.append({"step": "ingest", "skipped": True, **done})
            else:
                report = self.ingestor.run(source, dataset, progress=progress)
                out = {
                    "version": report.version.ref,
                    "version_id": report.version.id,
                    "added": report.added,
                    "quarantined": sum(report.quarantined.values()),
                }
                self._record(key, "ingest", out)
                say(f"ingest: {report.version.ref} ({report.added} added)")
                steps.append({"step": "ingest", "skipped": False, **out})
        version = self.builder.catalog.resolve(dataset)
        inputs = {
            "dataset_version": version.id,
            "train": self.config.train.model_dump(),
            "gates": self.config.gates.model_dump(),
            "model": self.config.model.model_dump(),
            "options": {k: v for k, v in asdict(options).items() if k not in ("resume", "actor")},
        }
        key = step_key("build", inputs)
        done = None if force else self._done(key)
        if done is not None:
            try:
                self.registry.resolve(done["model"])
                say(f"build: skipped, inputs unchanged since {done['model']}")
                steps.append({"step": "build", "skipped": True, **done})
                return {"dataset_version": version.ref, "model": done["model"], "steps": steps}
            except NotFoundError:
                pass
        result = self.builder.build(version.ref, options, progress)
        out = {
            "model": result.model.ref,
            "run_id": result.run_id,
            "accuracy": result.evaluation["accuracy"],
            "gates_passed": result.gates["passed"],
            "parity_passed": result.parity["passed"],
        }
        self._record(key, "build", out)
        steps.append({"step": "build", "skipped": False, **out})
        return {"dataset_version": version.ref, "model": result.model.ref, "steps": steps}
