"""Turn a dataset version into a tested, registered ONNX model.

search (optional) -> final training run (resumable) -> evaluation on the untouched test split
-> quality gates -> ONNX export + parity -> optional int8 -> bundle -> registry. Each stage is a
function in ``kennel.pipeline.steps``; ``Builder.build`` composes them, and the CLI and the
pipeline runner are shells over it.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kennel.config import KennelConfig, TrainConfig
from kennel.datasets.versioning import DatasetCatalog
from kennel.errors import ConfigError
from kennel.evaluate.gates import GateResult
from kennel.evaluate.report import Evaluation
from kennel.package import bundle
from kennel.package.quantize import Quantized
from kennel.package.verify import Parity
from kennel.pipeline.options import BuildOptions
from kennel.pipeline.steps import prepare, train
from kennel.pipeline.steps.evaluate import evaluate_model
from kennel.pipeline.steps.package import package_model
from kennel.pipeline.steps.register import complete_run, register_model, store_artifacts
from kennel.progress import Progress, silent
from kennel.registry.entities import ModelVersion
from kennel.registry.store import ModelRegistry
from kennel.storage import ContentStore
from kennel.train import checkpoint
from kennel.train.parallel import Parallel
from kennel.train.results import EpochStats
from kennel.train.studies import SharedStudies
from kennel.train.tracking import RunTracker
from kennel.train.tune import TrialSummary

__all__ = ["BuildOptions", "BuildResult", "Builder"]


@dataclass(frozen=True)
class BuildResult:
    model: ModelVersion
    run_id: str
    study: str | None
    config: TrainConfig  # what the final run trained with
    trials: tuple[TrialSummary, ...]
    evaluation: Evaluation
    gates: GateResult
    parity: Parity
    quantization: Quantized | None
    history: tuple[EpochStats, ...]
    seconds: float
    champion: bool = field(default=False)

    def as_dict(self) -> dict[str, object]:
        evaluation = self.evaluation.as_dict()
        return {
            "model": self.model.as_dict(),
            "run_id": self.run_id,
            "study": self.study,
            "params": bundle.params(self.config),
            "trials": [t.as_dict() for t in self.trials],
            "evaluation": {k: v for k, v in evaluation.items() if k not in ("curves",)},
            "gates": self.gates.as_dict(),
            "parity": self.parity.as_dict(),
            "quantization": self.quantization.as_dict() if self.quantization else None,
            "history": [asdict(h) for h in self.history],
            "seconds": round(self.seconds, 2),
            "champion": self.champion,
        }


class Builder:
    """Builds models of one project; every collaborator comes in through the constructor."""

    def __init__(
        self,
        *,
        config: KennelConfig,
        tracker: RunTracker,
        registry: ModelRegistry,
        content: ContentStore,
        catalog: DatasetCatalog,
        artifacts_url: str,
        cache_root: Path,
        runs_root: Path,
        workers: int = 1,
        studies: SharedStudies | None = None,
    ) -> None:
        self.config = config
        self.studies = studies
        self.tracker = tracker
        self.registry = registry
        self.content = content
        self.catalog = catalog
        self.artifacts_url = artifacts_url
        self.cache_root = cache_root
        self.runs_root = runs_root
        self.workers = workers

    def build(
        self,
        dataset_ref: str,
        options: BuildOptions,
        progress: Progress = silent,
        *,
        parallel: Parallel | None = None,
    ) -> BuildResult:
        """Build a model; with ``parallel`` (torchrun's rank 0), train it data-parallel with
        the ranks that ``follow``."""
        began = time.perf_counter()
        plan, images = self._prepare(dataset_ref, options, progress)
        resume = train.run_to_resume(
            options,
            plan.config,
            plan.version,
            plan.warm.ref if plan.warm else None,
            tracker=self.tracker,
            runs_root=self.runs_root,
        )
        with ExitStack() as claims:
            if resume is not None:  # claimed before anything is done with it, then read again
                claims.enter_context(train.owned(self.runs_root, resume.id))
                resume = train.still_resumable(self.tracker, resume)
                if parallel is None or not parallel.distributed:  # else the launcher checked
                    # a damaged checkpoint is refused before the run is taken up again: its
                    # time and state stay as the kill left them
                    checkpoint.verify(self.runs_root / resume.id / checkpoint.CHECKPOINT)
            if parallel is not None and parallel.distributed and resume is None:
                options.check_parallel(plan.config)
            run = train.start_run(
                plan,
                options,
                resume=resume,
                tracker=self.tracker,
                images=images,
                runs_root=self.runs_root,
                progress=progress,
                studies=self.studies,
            )
            if resume is None:
                claims.enter_context(train.owned(self.runs_root, run.id))
            if parallel is not None:
                parallel.broadcast_json(run.shared())
                self._cache(images, run.config.image_size, parallel)
            with train.failed_unless_done(self.tracker, run.id, self.runs_root / run.id):
                trained = train.train(
                    run,
                    plan,
                    images=images,
                    tracker=self.tracker,
                    runs_root=self.runs_root,
                    progress=progress,
                    parallel=parallel,
                )
                evaluated = evaluate_model(trained, plan, self.config.gates, progress)
                package = package_model(trained, evaluated, plan, self.config.model, progress)
                store_artifacts(package, self.content)
                registration = register_model(
                    package,
                    registry=self.registry,
                    actor=options.actor,
                    token=options.token,
                    progress=progress,
                    seq_of=self._dataset_seq,
                )
                complete_run(self.tracker, trained, evaluated, package, registration)
        return BuildResult(
            model=registration.model,
            run_id=run.id,
            study=run.study,
            config=run.config,
            trials=run.trials,
            evaluation=evaluated.evaluation,
            gates=evaluated.gates,
            parity=package.parity,
            quantization=package.quantized,
            history=trained.fit.history,
            seconds=time.perf_counter() - began,
            champion=registration.champion,
        )

    def _dataset_seq(self, dataset: str, version: str) -> int:
        return self.catalog.resolve(f"{dataset}@{version}").seq

    def check(self, dataset_ref: str, options: BuildOptions, *, distributed: bool = False) -> None:
        """Refuse, in one line, what ``build`` would refuse before it trains (an option, the
        dataset, ``--init-from``, ``--study``, a search on several ranks) without reading an
        image or writing anything: a data-parallel launcher calls it before any rank starts."""
        config = options.apply(self.config.train)
        if distributed and options.resume == "off":
            options.check_parallel(config)  # needs no data: said first
        version = self.catalog.resolve(dataset_ref)
        prepare.plan(version, self.catalog.rows(version), config, self.config.data.labels)
        warm = None
        if options.init_from:
            warm = prepare.warm_start(
                options.init_from,
                registry=self.registry,
                tracker=self.tracker,
                content=self.content,
            )
        resumed = train.run_to_resume(
            options,
            config,
            version,
            warm.ref if warm else None,
            tracker=self.tracker,
            runs_root=self.runs_root,
        )
        if resumed is not None:  # the run keeps its own settings; its checkpoint must be whole
            checkpoint.verify(self.runs_root / resumed.id / checkpoint.CHECKPOINT)
            return
        if distributed:
            options.check_parallel(config)
        if options.study is not None:
            if self.studies is None:
                raise ConfigError("this build has no shared studies to read --study from")
            self.studies.result(options.study, version.id)

    def follow(self, dataset_ref: str, options: BuildOptions, parallel: Parallel) -> None:
        """A rank other than 0 of a data-parallel build: train its share of the run rank 0
        started, then leave the rest (evaluation, packaging, registration) to rank 0."""
        plan, images = self._prepare(dataset_ref, options, silent)
        run = train.TrainingRun.joined(parallel.broadcast_json())
        self._cache(images, run.config.image_size, parallel)
        train.train(
            run,
            plan,
            images=images,
            tracker=self.tracker,
            runs_root=self.runs_root,
            progress=silent,
            parallel=parallel,
        )

    def _prepare(
        self, dataset_ref: str, options: BuildOptions, progress: Progress
    ) -> tuple[prepare.BuildPlan, prepare.ImageSets]:
        config = options.apply(self.config.train)  # a bad option fails before any data is read
        version = self.catalog.resolve(dataset_ref)
        plan = prepare.plan(version, self.catalog.rows(version), config, self.config.data.labels)
        if options.init_from:
            plan = plan.warm_started(
                prepare.warm_start(
                    options.init_from,
                    registry=self.registry,
                    tracker=self.tracker,
                    content=self.content,
                )
            )
        images = prepare.ImageSets(
            plan,
            content=self.content,
            artifacts_url=self.artifacts_url,
            cache_root=self.cache_root,
            workers=self.workers,
            progress=progress,
        )
        return plan, images

    @staticmethod
    def _cache(images: prepare.ImageSets, size: int, parallel: Parallel) -> None:
        """One process per machine decodes the image cache; its neighbours then open it."""
        if parallel.local_rank == 0:
            images(size)
        parallel.barrier()
        images(size)
