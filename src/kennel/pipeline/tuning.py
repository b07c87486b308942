"""Distributed hyperparameter search: start a shared study on a dataset version, work on it
from any machine with the project's kennel.yaml, read how it stands. The build then trains
the study's best trial (``BuildOptions(study=...)``)."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kennel.config import KennelConfig
from kennel.datasets.versioning import DatasetCatalog
from kennel.errors import ConfigError
from kennel.pipeline.options import BuildOptions
from kennel.pipeline.steps import prepare
from kennel.progress import Event, Progress, silent
from kennel.storage import ContentStore
from kennel.train import probe
from kennel.train.data import ImageSet
from kennel.train.studies import SharedStudies
from kennel.train.study_records import (
    NAME_MAX,
    StudySpec,
    StudyStatus,
    check_study_name,
    check_trials,
)
from kennel.train.tracking import RunTracker
from kennel.train.tune import Objective, TrialSummary, check_space


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` between processes of this machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Tuner:
    """Shared studies of one project; every collaborator comes in through the constructor."""

    def __init__(
        self,
        *,
        config: KennelConfig,
        catalog: DatasetCatalog,
        tracker: RunTracker,
        studies: SharedStudies,
        content: ContentStore,
        artifacts_url: str,
        cache_root: Path,
        runs_root: Path,
        workers: int = 1,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.tracker = tracker
        self.studies = studies
        self.content = content
        self.artifacts_url = artifacts_url
        self.cache_root = cache_root
        self.runs_root = runs_root
        self.workers = workers

    def start(
        self,
        dataset_ref: str,
        *,
        trials: int,
        name: str | None = None,
        options: BuildOptions | None = None,
    ) -> StudyStatus:
        """Create the study (``DATASET-VERSION12`` unless named) with ``trials`` queued; again
        with the same settings, it is left as it is (or topped up to more trials). The data
        and settings are checked before anything is written."""
        check_trials(trials)
        if name is not None:
            check_study_name(name)
        config, dropped = probe.narrowed((options or BuildOptions()).apply(self.config.train))
        if dropped and not config.search.space:
            raise ConfigError(
                f"nothing to tune: a linear probe (train.freeze_backbone on {config.arch}) "
                f"fits its classifier without {', '.join(dropped)}; search image_size or arch, "
                "or train once with kennel train"
            )
        check_space(config.search.space, config.search.method)
        self.studies.probe()  # a store that cannot be shared or reached fails first
        version = self.catalog.resolve(dataset_ref)
        prepare.plan(version, self.catalog.rows(version), config, self.config.data.labels)
        spec = StudySpec(
            name=name or f"{version.dataset[: NAME_MAX - 13]}-{version.id[:12]}",
            dataset=version.dataset,
            dataset_version=version.id,
            config=config,
            trials=trials,
        )
        return self.studies.create(spec)

    def status(self, name: str) -> StudyStatus:
        return self.studies.status(name)

    def work(
        self,
        name: str,
        *,
        limit: int | None = None,
        threads: int | None = None,
        progress: Progress = silent,
    ) -> int:
        """Run the study's queued trials on this machine until the study is finished (or
        ``limit`` trials ran here) with ``threads`` (default: this kennel.yaml's
        ``train.threads``); returns how many ran here."""
        spec = self.studies.spec(name)
        cores = self.config.train.threads if threads is None else threads
        config = spec.config.model_copy(update={"threads": cores})
        version = self.catalog.resolve(f"{spec.dataset}@{spec.dataset_version}")
        plan = prepare.plan(version, self.catalog.rows(version), config, self.config.data.labels)
        sets = prepare.ImageSets(
            plan,
            content=self.content,
            artifacts_url=self.artifacts_url,
            cache_root=self.cache_root,
            workers=self.workers,
            progress=progress,
        )

        def images(size: int) -> ImageSet:  # one cache builder per machine at a time
            with _locked(self.cache_root / f".lock-{size}"):
                return sets(size)

        def on_trial(t: TrialSummary) -> None:
            progress(
                Event(
                    "tune",
                    t.line(),
                )
            )

        def on_wait(status: StudyStatus) -> None:
            running = [t.number for t in status.trials if t.status == "running"]
            progress(Event("tune", f"  waiting for running trial(s) {running}"))

        worker = f"{socket.gethostname()}:{os.getpid()}"
        progress(Event("build", f"worker {worker} joins study {name!r}"))
        objective = Objective(
            config,
            images,
            plan.splits.train,
            plan.splits.validation,
            tracker=self.tracker,
            dataset=version.dataset,
            dataset_version=version.id,
            run_root=self.runs_root,
            study=name,
            on_trial=on_trial,
        )
        return self.studies.work(
            name, objective, tracker=self.tracker, worker=worker, limit=limit, on_wait=on_wait
        )
