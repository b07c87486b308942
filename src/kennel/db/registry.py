"""The registry aggregate: numbered model versions, their aliases and every alias move
(entities in, entities out).

Version numbers are assigned inside the inserting transaction and retried on conflict, so
concurrent registrations get distinct, consecutive numbers (no duplicate, no gap).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from kennel.db.audit import record
from kennel.db.engine import Database
from kennel.db.locking import serialize
from kennel.db.schema import AliasEventRow, ModelAliasRow, ModelVersionRow
from kennel.errors import MetadataError, NotFoundError, ReleaseRefusedError

_RETRIES = 200


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    run_id: str | None
    dataset: str | None
    dataset_version: str | None
    files: dict[str, str]  # file name -> sha256
    metrics: dict[str, Any]
    gates_passed: bool
    gate_reasons: list[str]
    created_at: datetime
    created_by: str
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "run_id": self.run_id,
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            "files": self.files,
            "metrics": self.metrics,
            "gates_passed": self.gates_passed,
            "gate_reasons": self.gate_reasons,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "aliases": list(self.aliases),
        }


@dataclass(frozen=True)
class AliasEvent:
    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    at: datetime
    kind: str = "set"  # deploy | release | rollback | champion | set (kennel.deploy.policy)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat()}


def _version(row: ModelVersionRow, aliases: tuple[str, ...] = ()) -> ModelVersion:
    return ModelVersion(
        name=row.name,
        version=row.version,
        run_id=row.run_id,
        dataset=row.dataset,
        dataset_version=row.dataset_version,
        files=dict(row.files),
        metrics=dict(row.metrics),
        gates_passed=row.gates_passed,
        gate_reasons=list(row.gate_reasons.get("reasons", [])),
        created_at=row.created_at,
        created_by=row.created_by,
        aliases=aliases,
    )


def _aliases(s: Session, name: str) -> dict[int, tuple[str, ...]]:
    """Version -> its aliases (sorted) of model ``name``."""
    out: dict[int, list[str]] = {}
    for r in s.scalars(select(ModelAliasRow).where(ModelAliasRow.name == name)):
        out.setdefault(r.version, []).append(r.alias)
    return {v: tuple(sorted(a)) for v, a in out.items()}


class RegistryStore:
    """Model versions, aliases and alias history in the metadata database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_version(
        self,
        name: str,
        files_for: Callable[[int], dict[str, str]],
        *,
        run_id: str | None,
        dataset: str | None,
        dataset_version: str | None,
        metrics: dict[str, Any],
        gates_passed: bool,
        gate_reasons: list[str],
        actor: str,
    ) -> ModelVersion:
        """Insert version newest + 1 of ``name``, audited as ``model.register`` in the same
        transaction. ``files_for(version)`` gives the file name -> sha256 map for that number;
        it is called inside the transaction and again for another number after a conflict
        (on PostgreSQL an advisory lock per name makes conflicts rare; SQLite's write lock or
        the primary key turns the rest into retries)."""
        for attempt in range(_RETRIES):
            try:
                with self.db.session() as s:
                    if s.get_bind().dialect.name == "postgresql":
                        s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
                    latest = s.scalar(
                        select(func.max(ModelVersionRow.version)).where(
                            ModelVersionRow.name == name
                        )
                    )
                    version = (latest or 0) + 1
                    files = files_for(version)
                    row = ModelVersionRow(
                        name=name,
                        version=version,
                        run_id=run_id,
                        dataset=dataset,
                        dataset_version=dataset_version,
                        files=files,
                        metrics=metrics,
                        gates_passed=gates_passed,
                        gate_reasons={"reasons": gate_reasons},
                        created_at=datetime.now(UTC),
                        created_by=actor,
                    )
                    s.add(row)
                    s.flush()
                    record(
                        s,
                        actor=actor,
                        action="model.register",
                        subject=f"{name}@{version}",
                        details={
                            "run": run_id,
                            "dataset_version": dataset_version,
                            "gates_passed": gates_passed,
                            "files": files,
                            # what the champion comparison reads (audit verify checks it)
                            "metrics": metrics,
                        },
                    )
                    return _version(row)
            except MetadataError as exc:
                if not isinstance(exc.__cause__, SAIntegrityError | OperationalError):
                    raise
                time.sleep(random.uniform(0.001, 0.02) * min(attempt + 1, 10))
        raise MetadataError(f"could not register {name}: too much contention")

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Versions by name then number, each with its aliases; of one model when given."""
        query = select(ModelVersionRow).order_by(ModelVersionRow.name, ModelVersionRow.version)
        if name is not None:
            query = query.where(ModelVersionRow.name == name)
        with self.db.session() as s:
            rows = s.scalars(query).all()
            aliases: dict[str, dict[int, tuple[str, ...]]] = {}
            for r in rows:
                if r.name not in aliases:
                    aliases[r.name] = _aliases(s, r.name)
            return [_version(r, aliases[r.name].get(r.version, ())) for r in rows]

    def page(self, name: str, *, limit: int, offset: int = 0) -> list[ModelVersion]:
        """Versions of ``name``, newest first, each with its aliases: ``limit`` of them after
        skipping ``offset``."""
        query = (
            select(ModelVersionRow)
            .where(ModelVersionRow.name == name)
            .order_by(ModelVersionRow.version.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.db.session() as s:
            aliases = _aliases(s, name)
            return [_version(r, aliases.get(r.version, ())) for r in s.scalars(query)]

    def count(self, name: str) -> int:
        """How many versions ``name`` has."""
        query = select(func.count()).where(ModelVersionRow.name == name)
        with self.db.session() as s:
            return int(s.scalar(query) or 0)

    def get(self, name: str, version: int) -> ModelVersion | None:
        """Version ``version`` of ``name`` with its aliases, or None."""
        with self.db.session() as s:
            row = s.get(ModelVersionRow, (name, version))
            if row is None:
                return None
            return _version(row, _aliases(s, name).get(row.version, ()))

    def latest_version(self, name: str) -> int | None:
        """The highest version number of ``name`` (None: no version)."""
        with self.db.session() as s:
            return s.scalar(
                select(func.max(ModelVersionRow.version)).where(ModelVersionRow.name == name)
            )

    def names(self) -> list[str]:
        """Every model name that has a version."""
        with self.db.session() as s:
            return list(s.scalars(select(ModelVersionRow.name).distinct()))

    def alias_target(self, name: str, alias: str) -> int | None:
        """The version ``alias`` of ``name`` points at (None: no such alias)."""
        with self.db.session() as s:
            row = s.get(ModelAliasRow, (name, alias))
            return row.version if row else None

    def alias_names(self, name: str) -> list[str]:
        """The aliases model ``name`` has."""
        with self.db.session() as s:
            return list(s.scalars(select(ModelAliasRow.alias).where(ModelAliasRow.name == name)))

    def move_alias(
        self,
        name: str,
        alias: str,
        version: int | None,
        *,
        actor: str,
        reason: str,
        kind: str,
        token: str | None,
        require_change: bool = False,
        expect_from: int | None = None,
        guard: Callable[[], None] | None = None,
    ) -> AliasEvent:
        """Point ``alias`` at ``version`` (None removes it) and keep the move as an event,
        audited as ``alias.move``, in one transaction. Moves of one alias are serialised, so
        each move's ``from`` is where the move before it left the alias. ``require_change``:
        refuse (ReleaseRefusedError) a move to the version the alias already names, checked
        under the lock, so of two racing releases of one version the second is refused.
        ``expect_from``: refuse the move unless the alias still names that version, 0: none
        (a rollback worked out from a history that another move has since changed, a release
        clicked on a page drawn before another). ``guard``:
        called under the lock, before anything is read; what it raises refuses the move (the
        release policy, checked again once the slow part of a release, hashing the bundle,
        is over: a rejection that landed meanwhile then counts)."""
        with self.db.session() as s:
            if guard is not None:
                # QA decisions take this lock too (``DeploymentStore.add_approval``): one that
                # lands while this move is checked waits for it, and is seen by the next
                serialize(s, f"policy:{name}")
            serialize(s, f"alias:{name}@{alias}")
            if guard is not None:
                guard()
            if version is not None and s.get(ModelVersionRow, (name, version)) is None:
                raise NotFoundError(f"model version {name}@{version} not found")
            current = s.get(ModelAliasRow, (name, alias))
            before = current.version if current else None
            if expect_from is not None and (before or 0) != expect_from:
                now = f"version {before}" if before is not None else "no version"
                then = f"version {expect_from}" if expect_from else "no version"
                raise ReleaseRefusedError(
                    f"{name}@{alias} moved to {now} meanwhile (this move was worked out "
                    f"from {then}); look again and retry"
                )
            if require_change and before == version:
                raise ReleaseRefusedError(f"{name}@{alias} already names version {version}")
            if version is None:
                if current is not None:
                    s.delete(current)
            elif current is None:
                s.add(ModelAliasRow(name=name, alias=alias, version=version))
            else:
                current.version = version
            event = AliasEventRow(
                name=name,
                alias=alias,
                from_version=before,
                to_version=version,
                actor=actor,
                reason=reason,
                kind=kind,
                at=datetime.now(UTC),
            )
            s.add(event)
            s.flush()
            record(
                s,
                actor=actor,
                action="alias.move",
                subject=f"{name}@{alias}",
                details={
                    "from": before,
                    "to": version,
                    "reason": reason,
                    "kind": kind,
                    "token": token,  # which token acted: names are not unique
                },
            )
            return AliasEvent(name, alias, before, version, actor, reason, event.at, kind)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every move of ``name``'s aliases (of one alias when given), oldest first."""
        query = select(AliasEventRow).where(AliasEventRow.name == name).order_by(AliasEventRow.id)
        if alias is not None:
            query = query.where(AliasEventRow.alias == alias)
        with self.db.session() as s:
            return [
                AliasEvent(
                    r.name, r.alias, r.from_version, r.to_version, r.actor, r.reason, r.at, r.kind
                )
                for r in s.scalars(query)
            ]
