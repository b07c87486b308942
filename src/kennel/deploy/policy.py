"""The one gate for every move that changes what an environment serves or what feed subscribers
load. The CLI, the alert actions, continuous deployment and (later) the dashboard all call
``PolicyGate.move``; nothing else moves an environment's or a feed's alias.

What each kind of move needs (``release.mode`` decides whether a QA approval is required):

    deploy    to the staging environment only (``release.staging``), for its application test;
              the model's quality gates passed; role operator, qa or admin
    release   to any other environment: gates passed, a passed certification *in staging* of
              that exact version, and in delivery mode a QA approval not followed by a
              rejection; role operator, qa or admin
    rollback  back to the version the environment served before its last release (replayed
              from the alias history by kind, never from the reason), unless QA has rejected
              that version since; role operator, qa or admin
    set       an alias that no environment or feed follows (``kennel models alias``): role
              operator or admin; ``champion`` belongs to the build and is refused here
    publish   re-announce on the feed exactly the version the alias names now

Every move re-reads the whole bundle through its content hashes before the alias moves, so a
tampered or missing blob is refused before any service or subscriber is pointed at it. The
actor is always an ``Identity`` (from a token, or a named system actor such as an alert rule),
never a free-text name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from kennel.config import KennelConfig
from kennel.db import Database
from kennel.db.deployments import CertificationVerdict, DeploymentStore
from kennel.errors import AuthError, NotFoundError, ReleaseRefusedError
from kennel.registry.entities import AliasEvent, ModelVersion
from kennel.registry.store import ModelRegistry
from kennel.serve.auth import Identity

CHAMPION = "champion"  # moved by the build alone, when a model passes its gates


class Move(StrEnum):
    DEPLOY = "deploy"
    RELEASE = "release"
    ROLLBACK = "rollback"
    SET = "set"
    PUBLISH = "publish"


@dataclass(frozen=True)
class Decision:
    """A QA decision as the policy reads it."""

    decision: str  # approved | rejected
    actor: str
    note: str


class PolicyGate:
    def __init__(self, config: KennelConfig, db: Database, registry: ModelRegistry) -> None:
        self.config = config
        self.db = db
        self.registry = registry
        self.store = DeploymentStore(db)

    # -- what the policy reads ----------------------------------------------------------------
    def environment_of(self, alias: str) -> str | None:
        """The environment that follows ``alias``, if any."""
        for name, env in self.config.environments.items():
            if env.alias == alias:
                return name
        return None

    def followed(self, alias: str) -> bool:
        """Does an environment or the model feed follow ``alias``?"""
        return self.environment_of(alias) is not None or alias in self.config.feed.aliases

    def _no_case_twin(self, name: str, alias: str) -> None:
        """Refuse ``Production`` beside ``production``: one letter's case apart, a hand-set
        alias reads as the one an environment follows while nothing serves it."""
        known = {CHAMPION, *self.config.feed.aliases, *self.registry.alias_names(name)}
        known |= {env.alias for env in self.config.environments.values()}
        twin = next((a for a in sorted(known) if a != alias and a.lower() == alias.lower()), None)
        if twin is not None:
            raise ReleaseRefusedError(
                f"alias {alias!r} differs from {name}@{twin} only in case: use {twin!r} "
                "or another name"
            )

    def certification(self, model: ModelVersion) -> CertificationVerdict | None:
        """The newest certification of ``model`` in the staging environment."""
        return self.store.latest_certification(
            model.name, model.version, self.config.release.staging
        )

    def decision(self, model: ModelVersion) -> Decision | None:
        approval = self.store.latest_approval(model.name, model.version)
        return Decision(approval.decision, approval.actor, approval.note) if approval else None

    def refusals(self, model: ModelVersion) -> list[str]:
        """Why ``model`` may not be released now (empty: it may)."""
        reasons = []
        if not model.gates_passed:
            reasons.append("quality gates failed: " + "; ".join(model.gate_reasons))
        cert = self.certification(model)
        staging = self.config.release.staging
        if cert is None:
            reasons.append(f"not certified in {staging}: deploy it to {staging} first")
        elif not cert.passed:
            reasons.append("certification failed: " + "; ".join(cert.reasons))
        decision = self.decision(model)
        if decision is not None and decision.decision != "approved":  # in either mode
            reasons.append(f"rejected by {decision.actor}: {decision.note}")
        elif decision is None and self.config.release.mode == "delivery":
            reasons.append("no QA approval (release.mode is delivery)")
        return reasons

    def served_before(self, name: str, alias: str) -> tuple[int, int]:
        """(current, previous) versions of ``alias``, replaying its history by kind: every
        other move pushes, a rollback pops, removing the alias clears."""
        stack: list[int] = []
        for event in self.registry.alias_history(name, alias):
            if event.kind == Move.ROLLBACK:
                if stack:
                    stack.pop()
            elif event.to_version is not None:
                if not stack or stack[-1] != event.to_version:  # a move that changed nothing
                    stack.append(event.to_version)
            else:
                stack.clear()
        if not stack:
            raise NotFoundError(f"{name}@{alias} has no current version to roll back")
        if len(stack) < 2:
            raise NotFoundError(f"{name}@{alias} has no earlier version to roll back to")
        return stack[-1], stack[-2]

    # -- checks -------------------------------------------------------------------------------
    def check(self, kind: Move, model: ModelVersion, alias: str, who: Identity) -> None:
        """Raise AuthError or ReleaseRefusedError unless ``who`` may make this move now."""
        permission = {Move.SET: "alias", Move.PUBLISH: "release"}.get(kind, str(kind))
        if not who.may(permission):
            raise AuthError(
                f"role {who.role!r} may not {kind} (it takes {who.roles_for(permission)})"
            )
        env = self.environment_of(alias)
        staging = self.config.release.staging
        if kind is Move.SET:
            if alias == CHAMPION:
                raise ReleaseRefusedError("champion is moved by the build when a model wins")
            self._no_case_twin(model.name, alias)
            if self.followed(alias):
                how = "kennel deploy" if env == staging else "kennel release or kennel rollback"
                raise ReleaseRefusedError(
                    f"{model.name}@{alias} is followed by "
                    f"{'environment ' + env if env else 'the model feed'}; use {how}"
                )
            return
        if not model.gates_passed:  # no move of any kind puts such a model in front of anyone
            raise ReleaseRefusedError(
                f"{model.ref} failed its quality gates: " + "; ".join(model.gate_reasons)
            )
        if kind is Move.DEPLOY:
            if env != staging:
                raise ReleaseRefusedError(
                    f"deploy goes to the staging environment {staging!r} for its application "
                    f"test; {env or alias} takes released versions (kennel release)"
                )
            self._not_rejected(model)
            return
        if kind is Move.RELEASE:
            if env is None or env == staging:
                raise ReleaseRefusedError(
                    f"release goes to an environment other than {staging!r}; "
                    f"{alias!r} is {'staging' if env else 'not an environment alias'}"
                )
            reasons = self.refusals(model)
            if reasons:
                raise ReleaseRefusedError(
                    f"{model.ref} may not be released to {env}: " + "; ".join(reasons)
                )
            return
        if kind is Move.ROLLBACK:
            self._not_rejected(model)
            return
        if kind is Move.PUBLISH:
            current = self.registry.resolve(f"{model.name}@{alias}")
            if current.version != model.version:
                raise ReleaseRefusedError(
                    f"{model.name}@{alias} names version {current.version}, not "
                    f"{model.version}: release a version to move it, publish only announces"
                )

    def _not_rejected(self, model: ModelVersion) -> None:
        decision = self.decision(model)
        if decision is not None and decision.decision != "approved":
            raise ReleaseRefusedError(
                f"{model.ref} was rejected by {decision.actor} ({decision.note}): "
                "choose another version"
            )

    def serves(self, model: ModelVersion) -> None:
        """Refuse to put ``model`` in front of anyone (a service, a worker, a scoring job)
        unless it passed its quality gates, however it was picked."""
        if not model.gates_passed:
            raise ReleaseRefusedError(
                f"{model.ref} failed its quality gates; name it with --model "
                f"{model.ref} --allow-failed-gates to use it anyway"
            )

    def verify_bundle(self, model: ModelVersion) -> None:
        """Read every file of the bundle through its content hash (IntegrityError if not)."""
        for filename in sorted(model.files):
            self.registry.read_file(model, filename)

    # -- the move -----------------------------------------------------------------------------
    def move(
        self,
        kind: Move,
        model: ModelVersion,
        alias: str,
        *,
        who: Identity,
        reason: str,
        expect_from: int | None = None,
    ) -> AliasEvent:
        """Check the policy and the role, verify the bundle, then move ``alias`` to ``model``
        with the kind of move recorded as data (``expect_from``: only if the alias still
        names that version when it moves, checked under the alias's lock)."""
        if kind is Move.PUBLISH:
            raise ValueError("publishing moves no alias; call check(Move.PUBLISH, ...)")
        self.check(kind, model, alias, who)
        self.verify_bundle(model)  # seconds for a large bundle: the policy is checked again
        return self.registry.set_alias(
            model.name,
            alias,
            model.version,
            actor=who.name,
            reason=reason,
            kind=str(kind),
            token=who.token_id,
            # a release or rollback that would not change what serves is refused (a second
            # click, a stale page): recorded, it would make the next rollback a no-op
            require_change=kind in (Move.RELEASE, Move.ROLLBACK),
            expect_from=expect_from,
            # under the alias's lock, once the bundle is verified: a QA rejection (or a lost
            # certification) that landed while the bundle was hashed refuses the move
            guard=lambda: self.check(kind, model, alias, who),
        )
