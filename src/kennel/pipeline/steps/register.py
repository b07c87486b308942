"""A package into the registry (a new version, ``champion`` when it earns it), its artifacts
into the content store, and the final run closed with what it produced."""

from __future__ import annotations

from collections.abc import Callable
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


# The sequence number of a dataset version (dataset, version id) in its dataset's history.
SeqOf = Callable[[str, str], int]


def champion_verdict(
    champion: ModelVersion | None, model: ModelVersion, seq_of: SeqOf
) -> tuple[bool, str]:
    """Whether ``model`` takes ``champion``, and why (or why not). Accuracies are compared
    only on the same test split: the same dataset version, where the model must be more
    accurate. A model built on a newer version of the champion's dataset takes it for its
    newer data, its gates (on its own test split) passed; one built on older data, or on
    another dataset, never does (``kennel models alias`` moves it by hand)."""
    accuracy = float(model.metrics["accuracy"])
    if not model.gates_passed:
        return False, "its gates failed"
    if champion is None:
        return True, f"first to pass its gates, test accuracy {accuracy:.4f}"
    held = float(champion.metrics.get("accuracy", 0.0))
    versions = champion.dataset_version and model.dataset_version
    if champion.dataset != model.dataset or not versions:
        return False, (
            f"{champion.ref} was tested on dataset {champion.dataset!r}, this model on "
            f"{model.dataset!r}: accuracies on different test sets are not compared"
        )
    if champion.dataset_version == model.dataset_version:
        if accuracy > held:
            return True, f"test accuracy {accuracy:.4f} beats {champion.ref}'s {held:.4f}"
        return False, f"test accuracy {accuracy:.4f} does not beat {champion.ref}'s {held:.4f}"
    dataset = model.dataset or ""
    ours = seq_of(dataset, str(model.dataset_version))
    theirs = seq_of(dataset, str(champion.dataset_version))
    if ours > theirs:
        return True, (
            f"passed its gates on {dataset}@v{ours}, newer data than {champion.ref}'s "
            f"@v{theirs} (test accuracy {accuracy:.4f} on its own test split)"
        )
    return False, f"built on {dataset}@v{ours}, older data than {champion.ref}'s @v{theirs}"


def promote_champion(
    registry: ModelRegistry,
    model: ModelVersion,
    actor: str,
    seq_of: SeqOf,
    token: str | None = None,
) -> tuple[bool, str]:
    """Move ``champion`` to ``model`` when ``champion_verdict`` says it earns it (``token``:
    the id of the token of the person whose build it is, recorded with the move)."""
    try:
        current: ModelVersion | None = registry.resolve(f"{model.name}@champion")
    except NotFoundError:  # no champion yet
        current = None
    earned, why = champion_verdict(current, model, seq_of)
    if earned:
        registry.set_alias(model.name, "champion", model.version, actor=actor, reason=why,
                           kind="champion", token=token)  # fmt: skip
    return earned, why


def register_model(
    package: Package,
    *,
    registry: ModelRegistry,
    actor: str,
    progress: Progress,
    seq_of: SeqOf,
    token: str | None = None,
) -> Registration:
    # a run killed after it registered, then resumed, registers nothing more: one run, one
    # model (it registered a second version of the same run)
    earlier = [v for v in registry.versions(package.name) if v.run_id == package.run_id]
    if earlier:
        progress(Event("build", f"{earlier[0].ref} was registered by this run before it stopped"))
        champion = (
            "champion" in earlier[0].aliases
            or promote_champion(registry, earlier[0], actor, seq_of, token)[0]
        )
        return Registration(model=registry.resolve(earlier[0].ref), champion=champion)
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
    champion, why = promote_champion(registry, registered, actor, seq_of, token)
    progress(
        Event(
            "build",
            f"registered {registered.ref}: "
            + (f"now champion ({why})" if champion else f"champion not moved ({why})"),
        )
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
