"""The retrain action: the newest data plus production images whose true labels came back as
feedback, warm-started from the champion, then deployed to staging (never further in
delivery mode: a human still approves the release)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow.compute as pc

from kennel.datasets.versioning import DatasetCatalog, DatasetVersion
from kennel.db import Database, aware
from kennel.db.locking import lease
from kennel.db.predictions import PredictionStore
from kennel.deploy.release import DeployResult, ReleaseManager
from kennel.errors import NotFoundError, StateError
from kennel.govern.feedback import require_feedback
from kennel.ingest.run import Ingestor
from kennel.ingest.sources import Entry, Listing, ReadResult
from kennel.pipeline.build import Builder, BuildOptions
from kennel.pipeline.steps.prepare import NothingToBalance
from kennel.progress import Event, Progress, silent
from kennel.registry.entities import ModelVersion
from kennel.registry.store import ModelRegistry
from kennel.serve.auth import Identity
from kennel.serve.diskroom import NOT_KEPT
from kennel.serve.runtime import METADATA
from kennel.storage import ContentStore

Window = tuple[datetime, datetime]
# The manifest column that marks feedback images from the window an alert was raised on.
WINDOW_COLUMN = "window"


def fed_prefix(environment: str) -> str:
    """The start of the uri each labelled image of ``environment`` gets in a dataset."""
    return f"feedback/{environment}/"


def labelled_added(
    catalog: DatasetCatalog, champion: ModelVersion, version: DatasetVersion, environment: str
) -> int:
    """How many labelled ``environment`` images ``version`` holds that the champion's data did
    not: what a retrain adds, also when a killed one's ingest had committed them already (its
    own ingest then adds none)."""
    prefix = fed_prefix(environment)

    def fed(v: DatasetVersion) -> set[str]:
        table = catalog.table(v)
        return set(table.filter(pc.starts_with(table["uri"], prefix))["uri"].to_pylist())

    before = set[str]()
    if champion.dataset == version.dataset and champion.dataset_version:
        before = fed(catalog.resolve(f"{champion.dataset}@{champion.dataset_version}"))
    return len(fed(version) - before)


class FeedbackSource:
    """An ingest source over labelled production traffic: the kept input images of
    predictions that received a feedback label. With ``window`` (an alert's since/until),
    each image's ``window`` column says whether it was captured in it (``alert``) or
    ``before``, so training can give the new conditions their share."""

    def __init__(
        self,
        db: Database,
        content: ContentStore,
        environment: str,
        labels: Sequence[str] = (),
        window: Window | None = None,
    ) -> None:
        self.db = db
        self.content = content
        self.environment = environment
        self.labels = tuple(labels)
        self.window = window
        self._digests: dict[str, str] = {}

    def describe(self) -> str:
        return f"feedback:{self.environment}"

    def scan(self) -> Listing:
        labelled = PredictionStore(self.db).labelled(self.environment)
        entries = []
        window = None if self.window is None else tuple(aware(t) for t in self.window)
        for observed in labelled:
            p = observed.prediction
            uri = f"{fed_prefix(self.environment)}{p.id}"
            if p.input_sha256 is not None:  # always, for a labelled prediction
                self._digests[uri] = p.input_sha256
            attrs = {"origin": "production", "camera": p.source}
            if window is not None:
                inside = window[0] <= p.at < window[1]
                attrs[WINDOW_COLUMN] = "alert" if inside else "before"
            entries.append(Entry(uri, observed.truth, attrs))
        return Listing(entries=entries, ignored=0)

    def read(self, entries: list[Entry]) -> Iterator[tuple[Entry, ReadResult]]:
        for entry in entries:
            digest = self._digests.get(entry.uri)
            if digest is None or not self.content.exists(digest):
                yield entry, f"the input image was not kept ({NOT_KEPT})"
                continue
            yield entry, self.content.get(digest)


@dataclass(frozen=True)
class RetrainResult:
    dataset_version: str
    added: int
    model: str
    deploy: DeployResult | None

    def summary(self) -> str:
        if self.deploy is None:
            return f"{self.model} built on {self.dataset_version} (+{self.added} labelled images)"
        cert = "passed" if self.deploy.certification.passed else "failed"
        released = "released to production" if self.deploy.released else "awaits QA approval"
        return (
            f"{self.model} trained on {self.dataset_version} (+{self.added} labelled production "
            f"images), deployed to staging, certification {cert}, {released}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset_version": self.dataset_version,
            "added": self.added,
            "model": self.model,
            "certified": self.deploy.certification.passed if self.deploy else None,
            "released": self.deploy.released is not None if self.deploy else None,
        }


def _retrained(
    registry: ModelRegistry, builder: Builder, champion: ModelVersion, dataset_version: str
) -> ModelVersion | None:
    """The newest version of ``champion``'s model trained on ``dataset_version`` warm-started
    from ``champion``: what this retrain would build, built already."""
    for version in reversed(registry.versions(champion.name)):
        if version.dataset_version != dataset_version or version.run_id is None:
            continue
        run = builder.tracker.store.get(version.run_id)
        if run is not None and run.init_from == champion.ref:
            return version
    return None


def retrain(
    *,
    db: Database,
    content: ContentStore,
    registry: ModelRegistry,
    ingestor: Ingestor,
    builder: Builder,
    releases: ReleaseManager,
    model: str,
    environment: str,
    labels: Sequence[str],
    actor: str,
    who: Identity | None = None,
    deploy_to: str | None = "staging",
    options: BuildOptions | None = None,
    epochs: int | None = None,
    window: Window | None = None,
    progress: Progress = silent,
) -> RetrainResult:
    """Ingest the labelled production images into the champion's dataset, train warm-started
    from the champion and deploy to ``deploy_to``. Given the alerting ``window``, every epoch
    gives the images from before it, from it, and the rest of the data an equal share: a few
    hundred labelled images of the new conditions would otherwise be outvoted by thousands of
    old ones. StateError, before any work, when there is no new labelled image
    (``require_feedback``) or another process is retraining the model, and before training
    when all of them were in the dataset already."""
    # One retrain of a model at a time, across processes: the monitor's action, the
    # dashboard's button and `kennel alerts retrain` would otherwise train and deploy at once.
    with lease(db.engine, f"retrain:{model}") as mine:
        if not mine:
            raise StateError(
                f"a retrain of {model} is running in another process; wait for it to finish"
            )
        champion = require_feedback(db, registry, model, environment)
        if champion.dataset is None:
            raise NotFoundError(f"{champion.ref} records no dataset to retrain on")

        def say(message: str) -> None:
            progress(Event("retrain", message))

        say(f"retrain: adding labelled {environment} images to {champion.dataset}")
        report = ingestor.run(
            FeedbackSource(db, content, environment, labels, window),
            champion.dataset,
            actor=actor,
            progress=progress,
        )
        if report.version.id == champion.dataset_version:
            # every labelled image was in the data the champion learnt from (the same bytes)
            raise StateError(
                f"the {report.files} labelled {environment} images are already in "
                f"{report.version.ref}, which {champion.ref} was trained on: a retrain would learn "
                "nothing new. Send the true labels of predictions on images it has not seen"
            )
        earlier = _retrained(registry, builder, champion, report.version.id)
        if earlier is not None:
            # the same images warm-started from the same champion: a second click on the
            # button, or an alert's action after a person's retrain, would train it again
            state = ", ".join(earlier.aliases) or "in no environment"
            raise StateError(
                f"{earlier.ref} was already trained on {report.version.ref} warm-started from "
                f"{champion.ref} (registered {earlier.created_at:%Y-%m-%d %H:%M} UTC, now "
                f"{state}): a retrain would train the same again. Approve or reject "
                f"{earlier.ref}, or send the true labels of more predictions first"
            )
        if options is None:  # the champion's own settings, one trial: a refresh, not a new search
            params = registry.read_json(champion, METADATA).get("params", {})
            options = BuildOptions(
                trials=1,
                arch=params.get("arch"),
                image_size=params.get("image_size"),
                epochs=epochs or params.get("epochs"),
            )
        overrides = dict(options.overrides)
        if window is not None:
            overrides.setdefault("balance_by", WINDOW_COLUMN)
        token = who.token_id if who is not None else None
        opts = BuildOptions(**{
            **options.__dict__, "init_from": champion.ref, "actor": actor, "overrides": overrides,
            "token": token,
        })  # fmt: skip
        try:  # before a run is recorded
            builder.check(report.version.ref, opts)
        except NothingToBalance as exc:
            raise StateError(
                f"none of the labelled images from the alert's window is in the training split "
                f"of {report.version.ref} (each file's split follows its content: these went to "
                "validation or test); label more of the window's predictions, then retrain"
            ) from exc
        say(f"retrain: training on {report.version.ref} warm-started from {champion.ref}")
        built = builder.build(report.version.ref, opts, progress)
        result = None
        if deploy_to is not None:
            result = releases.deploy(
                built.model.ref, deploy_to, who=who or Identity.system(actor), progress=progress
            )
        added = labelled_added(ingestor.catalog, champion, report.version, environment)
        return RetrainResult(report.version.ref, added, built.model.ref, result)
