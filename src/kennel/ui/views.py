"""What the Overview and Deployments pages show, read through the library's public calls: the
registry (versions, aliases and their history), the policy gate (certification, QA decision,
what blocks a release) and each environment's service (the version it answers with).

A ``Button`` carries whether it can act for the signed-in role now and, if not, why; the same
checks run again in the library when it is pressed, so a stale page can never do more."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kennel.db import aware
from kennel.deploy import environments
from kennel.deploy.policy import Decision, PolicyGate
from kennel.errors import KennelError, NotFoundError
from kennel.registry.entities import AliasEvent, ModelVersion
from kennel.serve.auth import Identity
from kennel.wiring import Workspace

VERBS = {"approve": "approve or reject", "release": "release", "rollback": "roll back",
         "alerts": "change alerts", "deploy": "retrain and deploy",
         "feedback": "settle labels"}  # fmt: skip


@dataclass(frozen=True)
class Button:
    label: str
    action: str  # the path the form posts to
    fields: dict[str, str]  # hidden inputs
    enabled: bool
    reason: str = ""  # why it cannot act, shown beside it when disabled
    note: str | None = None  # the label of a free-text note input, None for none
    danger: bool = False

    @property
    def id(self) -> str:
        return "b-" + "-".join([self.action.strip("/").replace("/", "-"), *self.fields.values()])


def button(
    label: str,
    action: str,
    fields: dict[str, str],
    *,
    who: Identity,
    permission: str,
    blockers: Sequence[str] = (),
    note: str | None = None,
    danger: bool = False,
) -> Button:
    reasons = []
    if not who.may(permission):
        reasons.append(
            f"your role ({who.role}) may not {VERBS.get(permission, permission)}; it takes "
            f"{Identity.roles_for(permission)}"
        )
    reasons += list(blockers)
    return Button(label, action, fields, not reasons, "; ".join(reasons), note, danger)


@dataclass(frozen=True)
class Certification:
    passed: bool
    at: datetime
    reasons: list[str]
    summary: dict[str, Any]


def certification_of(gate: PolicyGate, model: ModelVersion) -> Certification | None:
    cert = gate.certification(model)
    if cert is None:
        return None
    return Certification(cert.passed, aware(cert.at), list(cert.reasons), dict(cert.summary))


@dataclass(frozen=True)
class EnvView:
    name: str
    alias: str
    url: str
    staging: bool
    model: ModelVersion | None  # what the alias names
    since: datetime | None  # when the alias last moved
    moved: AliasEvent | None
    answering: int | None  # the version the service reports; None: not answering
    certification: Certification | None
    decision: Decision | None
    history: list[AliasEvent]  # newest first
    buttons: list[Button] = field(default_factory=list)


def _resolve(ws: Workspace, ref: str) -> ModelVersion | None:
    try:
        return ws.registry.resolve(ref)
    except NotFoundError:
        return None


def environment(
    ws: Workspace, gate: PolicyGate, name: str, who: Identity, *, probe: bool = True
) -> EnvView:
    """One environment: its alias, the service's answer, its buttons for ``who``."""
    config = ws.project.config
    target = config.environments.get(name)
    if target is None:
        raise NotFoundError(f"no environment {name!r} in kennel.yaml")
    model_name = config.model.name
    staging_name = config.release.staging
    model = _resolve(ws, f"{model_name}@{target.alias}")
    history = ws.registry.alias_history(model_name, target.alias)
    moved = history[-1] if history else None
    is_staging = name == staging_name
    cert = certification_of(gate, model) if model else None
    decision = gate.decision(model) if model else None
    buttons: list[Button] = []
    if is_staging and model is not None:
        fields = {"model": model.ref}
        approve_blockers = [] if cert else [f"{model.ref} has no certification in {name}"]
        if cert is not None and not cert.passed:
            approve_blockers.append(f"{model.ref} failed its application test in {name}")
        if decision is not None and decision.decision == "approved":
            approve_blockers.append(f"already approved by {decision.actor}")
        buttons += [
            button("Approve", "/actions/approve", fields, who=who, permission="approve",
                   blockers=approve_blockers, note="approval note"),
            button("Reject", "/actions/reject", fields, who=who, permission="approve",
                   blockers=[f"already rejected by {decision.actor}"]
                   if decision is not None and decision.decision == "rejected" else [],
                   note="rejection note", danger=True),
        ]  # fmt: skip
    elif not is_staging:
        candidate = _resolve(ws, f"{model_name}@{config.environments[staging_name].alias}")
        if candidate is None:
            buttons.append(button("Release", "/actions/release", {"env": name}, who=who,
                                  permission="release",
                                  blockers=[f"nothing is deployed to {staging_name}"]))  # fmt: skip
        else:
            blockers = gate.refusals(candidate)
            if model is not None and model.version == candidate.version:
                blockers = [f"{name} already serves {candidate.ref}"]
            buttons.append(
                button(f"Release {candidate.ref}", "/actions/release",
                       {"env": name, "model": candidate.ref,
                        "current": str(model.version if model else 0)},
                       who=who, permission="release", blockers=blockers, note="release reason")
            )  # fmt: skip
        buttons.append(
            button("Roll back", "/actions/rollback",
                   {"env": name, **({"current": str(model.version)} if model else {})}, who=who,
                   permission="rollback", blockers=rollback_blockers(ws, gate, target.alias),
                   note="rollback reason", danger=True)
        )  # fmt: skip
    answering = environments.served_version(target.url, timeout=0.5) if probe else None
    return EnvView(
        name=name,
        alias=target.alias,
        url=target.url,
        staging=is_staging,
        model=model,
        since=aware(moved.at) if moved else None,
        moved=moved,
        answering=answering,
        certification=cert,
        decision=decision,
        history=list(reversed(history)),
        buttons=buttons,
    )


def rollback_blockers(ws: Workspace, gate: PolicyGate, alias: str) -> list[str]:
    name = ws.project.config.model.name
    try:
        _current, previous = gate.served_before(name, alias)
    except NotFoundError as exc:
        return [str(exc)]
    earlier = _resolve(ws, f"{name}@{previous}")
    decision = gate.decision(earlier) if earlier else None
    if decision is not None and decision.decision != "approved":
        return [f"{name}@{previous}, the version before, was rejected by {decision.actor}"]
    return []


def environments_of(ws: Workspace, who: Identity, *, probe: bool = True) -> list[EnvView]:
    """Every environment, staging first, in kennel.yaml's order otherwise."""
    config = ws.project.config
    gate = PolicyGate(config, ws.db, ws.registry)
    names = sorted(config.environments, key=lambda n: n != config.release.staging)
    return [environment(ws, gate, n, who, probe=probe) for n in names]


def timeline_series(views: list[EnvView]) -> dict[str, list[tuple[datetime, float | None]]]:
    """The version each environment's alias named over time (a point per move)."""
    return {
        v.name: [
            (aware(e.at), float(e.to_version) if e.to_version is not None else None)
            for e in reversed(v.history)
        ]
        for v in views
    }


@dataclass(frozen=True)
class Overview:
    dataset: Any | None  # the champion's DatasetVersion, else the pipeline's, else the newest
    datasets: int
    champion: ModelVersion | None
    models: list[ModelVersion]
    envs: list[EnvView]
    candidate: ModelVersion | None  # what staging serves: the next release
    blockers: list[str]  # why the candidate may not be released now


def overview(ws: Workspace, who: Identity) -> Overview:
    config = ws.project.config
    catalog = ws.catalog
    newest = [v for v in (catalog.latest(d) for d in catalog.datasets()) if v is not None]
    models = ws.registry.versions(config.model.name)
    champion = _resolve(ws, f"{config.model.name}@champion")
    # beside the champion, the data it was trained on; else the pipeline's dataset; else
    # the newest of any (a dataset of another name is no lineage of the champion)
    dataset = _trained_on(ws, champion) or next(
        (v for v in newest if v.dataset == config.pipeline.dataset),
        max(newest, key=lambda v: aware(v.created_at), default=None),
    )
    envs = environments_of(ws, who)
    staging = next((e for e in envs if e.staging), None)
    candidate = staging.model if staging else None
    blockers: list[str] = []
    if candidate is not None:
        blockers = PolicyGate(config, ws.db, ws.registry).refusals(candidate)
        # as Deployments' Release button says: nothing to release where it already serves
        served = [e.name for e in envs if not e.staging and e.model is not None
                  and e.model.version == candidate.version]  # fmt: skip
        blockers += [f"{name} already serves {candidate.ref}" for name in served]
    return Overview(dataset, len(newest), champion, models, envs, candidate, blockers)


def _trained_on(ws: Workspace, model: ModelVersion | None) -> Any | None:
    """The dataset version ``model`` was trained on, when it is known and still there."""
    if model is None or not model.dataset or not model.dataset_version:
        return None
    try:
        return ws.catalog.resolve(f"{model.dataset}@{model.dataset_version}")
    except KennelError:  # gone, or a name no longer valid: nothing to show beside it
        return None


def accuracy_series(models: list[ModelVersion]) -> dict[str, list[tuple[float, float | None]]]:
    """Test accuracy per registered version (x = version number)."""
    points = []
    for m in models:
        value = m.metrics.get("accuracy")
        points.append((float(m.version), float(value) if isinstance(value, int | float) else None))
    return {"test accuracy": points}
