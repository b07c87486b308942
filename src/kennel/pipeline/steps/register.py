"""A package into the registry (a new version, ``champion`` when it earns it), its artifacts
into the content store, and the final run closed with what it produced."""

from __future__ import annotations

from dataclasses import dataclass

from kennel.errors import NotFoundError
from kennel.pipeline.steps.evaluate import Evaluated
from kennel.pipeline.steps.package import Package
from kennel.pipeline.steps.train import TrainedModel
from kennel.progress import Event, Progress
from kennel.registry.entities import ModelVersion
from kennel.registry.store import ModelRegistry
from kennel.storage import ContentStore
from kennel.train.tracking import RunTracker


@dataclass(frozen=True)
class Registration:
    model: ModelVersion  # as the registry holds it now, aliases included
    champion: bool  # ``champion`` moved to it


def store_artifacts(package: Package, content: ContentStore) -> None:
    """The weights (for warm starts) and the test predictions (to recompute the report)."""
    content.put(package.weights)
    content.put(package.predictions)


def promote_champion(registry: ModelRegistry, model: ModelVersion, actor: str) -> bool:
    """Move ``champion`` to a model that passed its gates and is at least as accurate."""
    if not model.gates_passed:
        return False
    try:
        current: ModelVersion | None = registry.resolve(f"{model.name}@champion")
    except NotFoundError:  # no champion yet
        current = None
    if current is not None and current.metrics.get("accuracy", 0) > model.metrics["accuracy"]:
        return False
    registry.set_alias(
        model.name,
        "champion",
        model.version,
        actor=actor,
        reason=f"passed gates with test accuracy {model.metrics['accuracy']:.4f}",
        kind="champion",
    )
    return True


def register_model(
    package: Package, *, registry: ModelRegistry, actor: str, progress: Progress
) -> Registration:
    registered = registry.register(
        package.name,
        package.files,
        run_id=package.run_id,
        dataset=package.dataset,
        dataset_version=package.dataset_version,
        metrics=package.summary.as_dict(),
        gates_passed=package.gates.passed,
        gate_reasons=list(package.gates.reasons),
        actor=actor,
    )
    champion = promote_champion(registry, registered, actor)
    progress(
        Event("build", f"registered {registered.ref}" + (" (now champion)" if champion else ""))
    )
    return Registration(model=registry.resolve(registered.ref), champion=champion)


def complete_run(
    tracker: RunTracker,
    trained: TrainedModel,
    evaluated: Evaluated,
    package: Package,
    registration: Registration,
) -> None:
    fit = trained.fit
    tracker.finish(
        trained.run.id,
        "completed",
        {
            "test_accuracy": evaluated.evaluation.accuracy,
            "best_epoch": fit.best_epoch,
            "epochs_run": fit.epochs_run,
            "val_accuracy": fit.best_val_accuracy,
            "weights_sha256": package.weights_sha256,
            "predictions_sha256": package.predictions_sha256,
            "model": registration.model.ref,
            "gates_passed": package.gates.passed,
        },
    )
