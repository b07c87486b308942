"""The one place that turns a project's config into concrete backends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kennel.config import Project, load_project
from kennel.errors import ConfigError
from kennel.progress import Progress, silent

# Backends are imported when first used, not here: `kennel --help` must not pay for PyTorch,
# and a serving process (`kennel serve`) must never load it.
if TYPE_CHECKING:
    from kennel.datasets.versioning import DatasetCatalog
    from kennel.db import Database
    from kennel.deploy.release import ReleaseManager
    from kennel.govern.actions import ActionContext
    from kennel.govern.retrain import RetrainResult, Window
    from kennel.ingest.run import Ingestor
    from kennel.ingest.sources import Source
    from kennel.monitor.runner import Monitor
    from kennel.pipeline.build import Builder
    from kennel.pipeline.tuning import Tuner
    from kennel.registry.store import ModelRegistry
    from kennel.serve.app import Service
    from kennel.serve.auth import Identity, TokenStore
    from kennel.serve.predlog import PredictionLog
    from kennel.serve.runtime import Predictor
    from kennel.storage import ContentStore
    from kennel.stream.batch import Scorer
    from kennel.train.studies import SharedStudies
    from kennel.train.tracking import RunTracker


@dataclass
class Workspace:
    """Backends for one project, opened lazily and shared by the commands of one process."""

    project: Project
    # Who is told of an audit entry that could not be anchored (kennel.db.audit.AuditAnchor;
    # the CLI prints it on stderr at once); None: it is logged.
    on_audit_failure: Callable[[str], None] | None = None

    @classmethod
    def load(cls, root: Path | str | None = None) -> Workspace:
        return cls(load_project(root))

    @cached_property
    def db(self) -> Database:
        from kennel.db import Database
        from kennel.db.audit import AuditAnchor

        # the audit chain's anchor lives in the artifact store, out of the database's reach
        anchor = AuditAnchor(self.content.blobs, report=self.on_audit_failure)
        return Database.open(self.project.metadata_url, audit_anchor=anchor)

    @cached_property
    def content(self) -> ContentStore:
        from kennel.storage import open_content_store

        store = open_content_store(self.project.artifacts_url)
        store.blobs.check()  # an unreachable store stops a command before it writes anything
        return store

    @cached_property
    def catalog(self) -> DatasetCatalog:
        from kennel.datasets.versioning import DatasetCatalog

        return DatasetCatalog(self.db, self.content)

    @cached_property
    def registry(self) -> ModelRegistry:
        from kennel.registry.store import ModelRegistry

        return ModelRegistry(self.db, self.content)

    @cached_property
    def tracker(self) -> RunTracker:
        from kennel.train.tracking import RunTracker

        return RunTracker(self.db)

    def builder(self) -> Builder:
        from kennel.pipeline.build import Builder

        return Builder(
            config=self.project.config,
            tracker=self.tracker,
            content=self.content,
            artifacts_url=self.project.artifacts_url,
            catalog=self.catalog,
            registry=self.registry,
            cache_root=self.project.state_dir / "cache",
            runs_root=self.project.state_dir / "runs",
            workers=self.project.workers,
            studies=self.studies,
        )

    @cached_property
    def studies(self) -> SharedStudies:
        """Shared Optuna studies (``kennel tune``); connects on first use."""
        from kennel.train.studies import SharedStudies

        return SharedStudies(self.project.metadata_url, self.project.config.train.search)

    def tuner(self) -> Tuner:
        from kennel.pipeline.tuning import Tuner

        return Tuner(
            config=self.project.config,
            catalog=self.catalog,
            tracker=self.tracker,
            studies=self.studies,
            content=self.content,
            artifacts_url=self.project.artifacts_url,
            cache_root=self.project.state_dir / "cache",
            runs_root=self.project.state_dir / "runs",
            workers=self.project.workers,
        )

    @cached_property
    def tokens(self) -> TokenStore:
        from kennel.serve.auth import TokenStore

        return TokenStore(self.db)

    def releases(self) -> ReleaseManager:
        from kennel.deploy.release import ReleaseManager

        return ReleaseManager(
            config=self.project.config,
            db=self.db,
            registry=self.registry,
            catalog=self.catalog,
            tracker=self.tracker,
            content=self.content,
            project_root=self.project.root,
            state_dir=self.project.state_dir,
        )

    def service(self, env: str) -> Service:
        from kennel.serve.server import build_service

        return build_service(
            self.project.config,
            env,
            db=self.db,
            registry=self.registry,
            state_dir=self.project.state_dir,
            inputs=self.content,
        )

    def prediction_log(self, name: str, *, keep_inputs: bool = False) -> PredictionLog:
        """A prediction log journalled in ``.kennel/spool/NAME.jsonl`` with the service's
        settings (``serve.log_sync``, ``log_flush_s``); input images kept when
        ``keep_inputs`` and ``serve.keep_inputs``. Started by the caller."""
        from kennel.serve.predlog import PredictionLog

        settings = self.project.config.serve
        return PredictionLog(
            self.db,
            self.project.state_dir / "spool" / f"{name}.jsonl",
            flush_s=settings.log_flush_s,
            sync=settings.log_sync,
            inputs=self.content if keep_inputs and settings.keep_inputs else None,
            min_free=settings.inputs_min_free_mb * 2**20,
        )

    def predictor(self, ref: str) -> Predictor:
        """An in-process Predictor for a registered model (NAME@VERSION or NAME@ALIAS)."""
        from kennel.serve.runtime import Bundle, Predictor

        model = self.registry.resolve(ref)
        files = {name: self.registry.read_file(model, name) for name in model.files}
        serve = self.project.config.serve
        bundle = Bundle.from_files(files, prefer_int8=serve.prefer_int8)
        return Predictor(bundle, max_pixels=serve.max_pixels)

    def scorer(
        self, predictor: Predictor, *, engine: str = "local", address: str | None = None
    ) -> Scorer:
        """Where batch scoring's chunks run: ``local`` (this process) or ``ray`` (the Ray
        cluster at ``address``; None: ``RAY_ADDRESS`` or a new local one)."""
        from kennel.stream.batch import LocalScorer

        if _engine(engine, address, "batch-score") == "local":
            return LocalScorer(predictor)
        from kennel.ingest.ray_engine import RayEngine
        from kennel.stream.ray_scoring import RayScorer

        return RayScorer(RayEngine(address), predictor)

    def ingestor(
        self, workers: int | None = None, *, engine: str = "local", address: str | None = None
    ) -> Ingestor:
        """An Ingestor whose per-file work runs on ``engine``: ``local`` (``workers`` processes)
        or ``ray`` (the Ray cluster at ``address``; None: ``RAY_ADDRESS`` or a new local one)."""
        from kennel.ingest.engines import Engine, LocalEngine
        from kennel.ingest.ray_engine import RayEngine
        from kennel.ingest.run import Ingestor

        chosen: Engine
        if _engine(engine, address, "ingest") == "ray":
            chosen = RayEngine(address, num_cpus=workers)
        else:
            chosen = LocalEngine(workers or self.project.workers)
        return Ingestor(
            self.db,
            self.content,
            self.project.artifacts_url,
            self.project.config.data,
            engine=chosen,
        )

    def source(self, spec: str, **options: Any) -> Source:
        """Open a data source, labelled with this project's known labels; manifest and SQL rows
        confined to the manifest's folder and ``data.allowed_roots``."""
        data = self.project.config.data
        options.setdefault("allowed_roots", self.project.allowed_roots)
        options.setdefault("max_bytes", data.max_file_bytes)
        from kennel.ingest.sources import open_source

        return open_source(spec, labels=data.labels, **options)

    def monitor(self) -> Monitor:
        from kennel.monitor.runner import Monitor

        return Monitor(self.project.config, self.db, self.registry, self.content)

    def retrain(
        self,
        progress: Progress = silent,
        window: Window | None = None,
        *,
        actor: str = "kennel-monitor",
        who: Identity | None = None,
    ) -> RetrainResult:
        """The retrain action: labelled production data + warm start -> staging (``who``:
        the person who asked for it, whose token its alias moves record)."""
        from kennel.govern.retrain import retrain

        config = self.project.config
        return retrain(
            db=self.db,
            content=self.content,
            registry=self.registry,
            ingestor=self.ingestor(),
            builder=self.builder(),
            releases=self.releases(),
            model=config.model.name,
            environment=config.monitor.environment,
            labels=config.data.labels,
            actor=actor,
            who=who,
            epochs=config.monitor.retrain_epochs,
            window=window,
            progress=progress,
        )

    def actions(
        self, progress: Progress = silent, *, actor: str = "kennel-monitor"
    ) -> ActionContext:
        from kennel.govern.actions import ActionContext

        return ActionContext(
            config=self.project.config,
            db=self.db,
            releases=self.releases(),
            retrain=lambda report, window: self.retrain(report, window, actor=actor),
            progress=progress,
            actor=actor,
        )

    def close(self) -> None:
        if "studies" in self.__dict__:
            self.studies.close()
        if "db" in self.__dict__:
            self.db.dispose()


def _engine(engine: str, address: str | None, job: str) -> str:
    """``local`` or ``ray``; an address only goes with ``ray``."""
    if engine not in ("local", "ray"):
        raise ConfigError(f"unknown {job} engine {engine!r} (choose local or ray)")
    if engine == "local" and address is not None:
        raise ConfigError("--address names a Ray cluster; it needs --engine ray")
    if address is not None and not address.strip():
        raise ConfigError("--address is empty: give a Ray cluster's HOST:PORT or 'auto'")
    return engine
