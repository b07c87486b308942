"""Deploy to staging and certify, approve or reject (QA), release to production, roll back,
announce on the feed. Every alias move goes through ``kennel.deploy.policy.PolicyGate`` and
lands in the registry's alias history and the audit chain with its actor, kind and reason.

Policy (``release.mode``):
- ``delivery``: production needs passed quality gates, a passed certification of that exact
  version and a QA approval that was not followed by a rejection.
- ``deployment``: the same gates and certification, no human: ``deploy`` releases by itself.
In both modes a failed gate or certification can never reach production.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kennel.config import KennelConfig
from kennel.datasets.versioning import DatasetCatalog
from kennel.db import Database
from kennel.db.audit import AuditLog
from kennel.db.deployments import Approval, DeploymentStore
from kennel.deploy import environments
from kennel.deploy.certify import Certification, certify
from kennel.deploy.policy import Move, PolicyGate
from kennel.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    ReleaseRefusedError,
    ServiceError,
)
from kennel.progress import Event, Progress, silent
from kennel.registry.entities import AliasEvent, ModelVersion
from kennel.registry.store import ModelRegistry
from kennel.serve.auth import Identity
from kennel.serve.runtime import METADATA
from kennel.storage import ContentStore
from kennel.stream import signing
from kennel.stream.feed import RedisFeed, publish_version
from kennel.train.tracking import RunTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    """A version announced on the feed: the one resolved, whatever alias the caller named."""

    name: str
    version: int
    alias: str
    stream: str
    entry: str

    @property
    def model(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class DeployResult:
    model: str
    environment: str
    url: str
    started_service: bool
    certification: Certification
    released: AliasEvent | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "environment": self.environment,
            "url": self.url,
            "started_service": self.started_service,
            "certification": self.certification.as_dict(),
            "released_to_production": self.released.as_dict() if self.released else None,
        }


class ReleaseManager:
    def __init__(
        self,
        *,
        config: KennelConfig,
        db: Database,
        registry: ModelRegistry,
        catalog: DatasetCatalog,
        tracker: RunTracker,
        content: ContentStore,
        project_root: Path,
        state_dir: Path,
    ) -> None:
        self.config = config
        self.db = db
        self.registry = registry
        self.catalog = catalog
        self.tracker = tracker
        self.content = content
        self.project_root = project_root
        self.state_dir = state_dir
        self.gate = PolicyGate(config, db, registry)
        self.deployments = DeploymentStore(db)

    def refusals(self, model: ModelVersion) -> list[str]:
        """Why ``model`` may not go to production now (empty: it may)."""
        return self.gate.refusals(model)

    # -- moves --------------------------------------------------------------------------------
    def deploy(
        self, ref: str, env: str = "staging", *, who: Identity, progress: Progress = silent
    ) -> DeployResult:
        def say(message: str) -> None:
            progress(Event("deploy", message))

        model = self.registry.resolve(ref)
        target = self.config.environment(env)
        if model.name != self.config.model.name:  # its services would never serve it
            raise ReleaseRefusedError(
                f"{model.ref}: this project's environments serve {self.config.model.name} "
                "(model.name in kennel.yaml)"
            )
        # a registered bundle never changes: read once, not at every poll of the wait below
        bundle_of = functools.cache(self._bundle_digest)
        # another project's service, or another program, on the port: said before the alias
        # moves
        body = environments.served(target.url)
        environments.check_owner(target.url, body, model, bundle_of)
        if body is None:
            environments.check_free(target.url)
        self.gate.move(
            Move.DEPLOY,
            model,
            target.alias,
            who=who,
            reason=f"deploy to {env} for its application test",
        )
        started = False
        if not environments.is_live(target.url):
            say(f"starting the {env} service at {target.url}")
            environments.start(self.project_root, self.state_dir, env, target.url)
            started = True
        environments.wait_for_version(
            target.url,
            model.version,
            timeout=max(30.0, 10 * self.config.serve.poll_s),
            model=model,
            bundle_of=bundle_of,
        )
        say(f"{target.url} serves {model.ref}; running the application test")
        cert = certify(
            model,
            env,
            target.url,
            catalog=self.catalog,
            tracker=self.tracker,
            content=self.content,
            db=self.db,
            limits=self.config.release.certification,
            actor=who.name,
            progress=progress,
        )
        say(f"certification {'passed' if cert.passed else 'FAILED: ' + '; '.join(cert.reasons)}")
        released = None
        to = self.config.release.to
        if self.config.release.mode == "deployment" and self._serves(to, model.version):
            say(f"continuous deployment: {to} already serves {model.ref}")
        elif self.config.release.mode == "deployment" and cert.passed and model.gates_passed:
            released = self.release(
                model.ref,
                to,
                who=Identity.system("continuous-deployment"),
                reason="certification and quality gates passed",
            )
            say(f"continuous deployment: released {model.ref} to {to}")
        return DeployResult(model.ref, env, target.url, started, cert, released)

    def _bundle_digest(self, version: int) -> str | None:
        """The sha256 of this project's metadata file of ``version`` (None: no such version):
        what its service reports in /health/ready."""
        try:
            found = self.registry.resolve(f"{self.config.model.name}@{version}")
        except NotFoundError:
            return None
        return found.files.get(METADATA)

    def decide(self, ref: str, decision: str, *, who: Identity | None, note: str) -> Approval:
        if who is None:
            raise AuthError("approving or rejecting needs a QA token (--token or KENNEL_TOKEN)")
        if not who.may("approve"):
            raise AuthError(f"role {who.role!r} may not approve or reject; it takes qa or admin")
        model = self.registry.resolve(ref)
        if decision == "approved":
            staging = self.config.release.staging
            cert = self.gate.certification(model)
            if cert is None:
                raise ReleaseRefusedError(
                    f"{model.ref} has no certification in {staging} to approve"
                )
            if not cert.passed:  # an approval of it would carry over to a later passing one
                raise ReleaseRefusedError(
                    f"{model.ref} failed its application test in {staging} ("
                    + "; ".join(cert.reasons)
                    + "): deploy it again once that is fixed, then approve; reject it to say no"
                )
        return self.deployments.add_approval(
            model.name,
            model.version,
            decision,
            actor=who.name,
            role=who.role,
            note=note,
            token=who.token_id,
        )

    def release(
        self,
        ref: str,
        to: str = "production",
        *,
        who: Identity,
        reason: str = "release",
        seen: int | None = None,
    ) -> AliasEvent:
        """Point ``to``'s alias at ``ref`` under the release policy. ``seen``: the version the
        caller saw ``to`` serve (0: none), as a dashboard page shows it; refused when another
        serves now, so that a click on a stale page cannot undo a newer release."""
        model = self.registry.resolve(ref)
        target = self.config.environment(to)
        event = self.gate.move(
            Move.RELEASE, model, target.alias, who=who, reason=reason, expect_from=seen
        )
        self.announce(event, who=who)
        return event

    def serving(self, model: ModelVersion) -> list[str]:
        """The environments other than staging whose alias names ``model`` now: a QA
        rejection stops later releases of it, not these (a rollback or another release
        does)."""
        staging = self.config.release.staging
        return [
            name
            for name in self.config.environments
            if name != staging and model.name == self.config.model.name
            and self._serves(name, model.version)
        ]  # fmt: skip

    @staticmethod
    def still_served(model: str, envs: list[str]) -> str:
        """What QA is told on rejecting ``model``, which ``envs`` serve now."""
        return (
            f"{', '.join(envs)} still serves {model}: a rejection stops later releases of it, "
            "not this one; roll back or release another version"
        )

    def _serves(self, env: str, version: int) -> bool:
        try:
            return self.served(env) == version
        except NotFoundError:  # nothing released there yet
            return False

    def served(self, env: str = "production") -> int:
        """The version the environment's alias names now."""
        alias = self.config.environment(env).alias
        return self.registry.resolve(f"{self.config.model.name}@{alias}").version

    def rollback(
        self,
        env: str = "production",
        *,
        who: Identity,
        reason: str = "by request",
        seen: int | None = None,
    ) -> AliasEvent:
        """Point the environment's alias back at the version it served before the last move.
        ``seen``: the version the caller saw served (a dashboard page, an operator's check);
        refused when it serves another now: two operators who each saw 2 and clicked Roll
        back sent production two steps back."""
        target = self.config.environment(env)
        name = self.config.model.name
        if not who.may(str(Move.ROLLBACK)):  # who first: a role without it learns no state
            raise AuthError(f"role {who.role!r} may not rollback (it takes "
                            f"{who.roles_for(str(Move.ROLLBACK))})")  # fmt: skip
        current, previous = self.gate.served_before(name, target.alias)
        if seen is not None and seen != current:
            raise ReleaseRefusedError(
                f"{name}@{target.alias} names version {current} now, not {seen} as when you "
                "looked: look again, then roll back if you still mean to"
            )
        model = self.registry.resolve(f"{name}@{previous}")
        # a release between reading the history and moving would be undone, and the alias
        # sent two steps back: the move happens only while the alias still names ``current``
        event = self.gate.move(
            Move.ROLLBACK,
            model,
            target.alias,
            who=who,
            reason=f"{reason} (from {current})",
            expect_from=current,
        )
        self.announce(event, who=who)
        return event

    def announce(self, event: AliasEvent, *, who: Identity) -> str | None:
        """Publish the version an alias now names on the model feed (pattern 3), when the
        feed is configured for that alias. The alias move stands either way: a feed outage
        is logged and audited, and ``kennel publish`` can announce it again."""
        feed_config = self.config.feed
        if not feed_config.url or event.alias not in feed_config.aliases:
            return None
        if event.to_version is None:
            return None
        try:
            return self.publish(f"{event.name}@{event.to_version}", event.alias, who=who).entry
        except ServiceError as exc:
            log.warning("%s@%s not announced on the feed: %s", event.name, event.alias, exc)
            return None

    def publish(self, ref: str, alias: str, *, who: Identity) -> Published:
        """Sign and publish ``ref`` as the model behind ``alias``; audited either way. Only the
        version the alias names now may be announced (the policy gate checks it), and that
        version, as resolved once, is the one announced and told (``ref`` may be an alias)."""
        feed_config = self.config.feed
        if not feed_config.url:
            raise ConfigError("feed.url is not set in kennel.yaml: nowhere to publish")
        model = self.registry.resolve(ref)
        self.gate.check(Move.PUBLISH, model, alias, who)
        self.gate.verify_bundle(model)
        actor = who.name
        feed = RedisFeed(feed_config.url, feed_config.stream)
        entry, problem = None, None
        try:
            key = signing.load_or_create(self.state_dir / "keys")
            # the version checked above, not ``ref`` again: an alias may move meanwhile
            entry = publish_version(feed, self.registry, model.ref, alias, key)
        except ServiceError as exc:
            problem = str(exc)
            raise
        finally:
            feed.close()
            AuditLog(self.db).append(
                actor=actor,
                action="feed.publish" if entry else "feed.publish_failed",
                subject=model.ref,
                details={"alias": alias, "stream": feed_config.stream, "entry": entry,
                         "error": problem},
            )  # fmt: skip
        return Published(model.name, model.version, alias, feed_config.stream, entry)
