"""``kennel pipeline run``: ingest (optional) -> build, as steps of the StepRunner, each
skipped when its inputs are unchanged (and the build resuming its training run)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from kennel.config import KennelConfig
from kennel.datasets.versioning import DatasetCatalog, DatasetVersion
from kennel.db.pipeline import PipelineStepStore
from kennel.errors import NotFoundError
from kennel.ingest.run import Ingestor
from kennel.ingest.sources import Source
from kennel.pipeline.build import Builder
from kennel.pipeline.options import BuildOptions
from kennel.pipeline.runner import Step, StepRecord, StepRunner
from kennel.progress import Progress, silent
from kennel.registry.store import ModelRegistry


class IngestOutput(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str  # NAME@short id
    version_id: str
    added: int
    quarantined: int


class BuildOutput(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str  # NAME@VERSION
    run_id: str
    accuracy: float
    gates_passed: bool
    parity_passed: bool


@dataclass(frozen=True)
class PipelineResult:
    dataset_version: str  # the version the build step used
    model: str  # the build step's model, built now or before
    steps: tuple[StepRecord[Any], ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "dataset_version": self.dataset_version,
            "model": self.model,
            "steps": [s.as_dict() for s in self.steps],
        }


def source_fingerprint(source: Source) -> str:
    """Names, labels, attributes and file stats (size, modification and change times, inode:
    an in-place rewrite that keeps size and mtime still changes ctime) of what the source
    lists, no image byte read: a manifest's corrected label or attribute changes it, as a
    changed file does. A file that cannot be stat'ed here (a URL's, an object store's) cannot
    be vouched for: then the fingerprint is new every time and the ingest runs, giving the
    same version when nothing changed."""
    digest = hashlib.sha256(source.describe().encode())
    for entry in source.scan().entries:
        try:
            st = os.stat(entry.uri.split("::")[-1])
        except (OSError, ValueError):
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            return f"unvouched:{uuid.uuid4().hex}"
        key = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"
        meta = json.dumps([entry.label, entry.attrs], sort_keys=True)
        digest.update(f"{entry.uri}\t{meta}\t{key}\n".encode())
    return digest.hexdigest()


class PipelineRunner:
    def __init__(
        self,
        *,
        config: KennelConfig,
        steps: PipelineStepStore,
        ingestor: Ingestor,
        builder: Builder,
        catalog: DatasetCatalog,
        registry: ModelRegistry,
    ) -> None:
        self.config = config
        self.steps = steps
        self.ingestor = ingestor
        self.builder = builder
        self.catalog = catalog
        self.registry = registry

    def ingest_step(self, dataset: str, source: Source, progress: Progress) -> Step[IngestOutput]:
        def run() -> IngestOutput:
            report = self.ingestor.run(source, dataset, progress=progress)
            return IngestOutput(
                version=report.version.ref,
                version_id=report.version.id,
                added=report.added,
                quarantined=sum(report.quarantined.values()),
            )

        return Step(
            name="ingest",
            inputs={
                "dataset": dataset,
                "source": source_fingerprint(source),
                "data": self.config.data.model_dump(),
            },
            output=IngestOutput,
            run=run,
            skipped=lambda out: f"ingest: skipped, source unchanged since {out.version}",
            done=lambda out: f"ingest: {out.version} ({out.added} added)",
        )

    def build_step(
        self, version: DatasetVersion, options: BuildOptions, progress: Progress
    ) -> Step[BuildOutput]:
        def run() -> BuildOutput:
            result = self.builder.build(version.ref, options, progress)
            return BuildOutput(
                model=result.model.ref,
                run_id=result.run_id,
                accuracy=result.evaluation.accuracy,
                gates_passed=result.gates.passed,
                parity_passed=result.parity.passed,
            )

        def registered(out: BuildOutput) -> bool:  # a model deleted since is built again
            try:
                self.registry.resolve(out.model)
            except NotFoundError:
                return False
            return True

        config = self.config
        return Step(
            name="build",
            inputs={
                "dataset_version": version.id,
                "train": config.train.model_dump(),
                "gates": config.gates.model_dump(),
                "model": config.model.model_dump(),
                "options": {  # not who asked: the same inputs by anyone are the same build
                    k: v
                    for k, v in asdict(options).items()
                    if k not in ("resume", "actor", "token")
                },
            },
            output=BuildOutput,
            run=run,
            skipped=lambda out: f"build: skipped, inputs unchanged since {out.model}",
            current=registered,
        )

    def run(
        self,
        *,
        dataset: str,
        source: Source | None,
        options: BuildOptions,
        force: bool = False,
        progress: Progress = silent,
    ) -> PipelineResult:
        runner = StepRunner(self.steps, force=force, progress=progress)
        records: list[StepRecord[Any]] = []
        if source is not None:
            records.append(runner.run(self.ingest_step(dataset, source, progress)))
        version = self.catalog.resolve(dataset)
        build = runner.run(self.build_step(version, options, progress))
        return PipelineResult(version.ref, build.output.model, (*records, build))
