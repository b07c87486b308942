"""Registered model versions in the metadata DB, their files in the content store.

Version numbers are assigned inside the inserting transaction and retried on conflict, so
concurrent registrations get distinct, consecutive numbers (no duplicate, no gap). Every alias
move is kept in ``alias_events`` and the audit chain.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError

from kennel.db import Database
from kennel.db.audit import record
from kennel.db.schema import AliasEventRow, ModelAliasRow, ModelVersionRow
from kennel.errors import (
    ConfigError,
    MetadataError,
    NotFoundError,
    StorageError,
    did_you_mean,
)
from kennel.fsutil import write_atomic
from kennel.registry.entities import AliasEvent, ModelVersion
from kennel.storage import ContentStore, check_key

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_RETRIES = 200


def check_model_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"invalid model name {name!r}: letters, digits, '.', '_', '-'")
    return name


def _entity(row: ModelVersionRow, aliases: tuple[str, ...] = ()) -> ModelVersion:
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


class ModelRegistry:
    def __init__(self, db: Database, content: ContentStore) -> None:
        self.db = db
        self.content = content

    def register(
        self,
        name: str,
        make_files: Callable[[int], dict[str, bytes]],
        *,
        run_id: str | None,
        dataset: str | None,
        dataset_version: str | None,
        metrics: dict[str, Any],
        gates_passed: bool,
        gate_reasons: list[str],
        actor: str,
    ) -> ModelVersion:
        """Register a new version; ``make_files(version)`` builds the bundle for that number."""
        check_model_name(name)
        cache: dict[int, dict[str, str]] = {}
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
                    if version not in cache:
                        files = make_files(version)
                        cache[version] = {
                            check_key(fname): self.content.put(data)
                            for fname, data in files.items()
                        }
                    row = ModelVersionRow(
                        name=name,
                        version=version,
                        run_id=run_id,
                        dataset=dataset,
                        dataset_version=dataset_version,
                        files=cache[version],
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
                            "files": cache[version],
                        },
                    )
                    return _entity(row)
            except MetadataError as exc:
                if not isinstance(exc.__cause__, SAIntegrityError | OperationalError):
                    raise
                time.sleep(random.uniform(0.001, 0.02) * min(attempt + 1, 10))
        raise MetadataError(f"could not register {name}: too much contention")

    def _aliases(self, name: str) -> dict[int, tuple[str, ...]]:
        with self.db.session() as s:
            rows = s.scalars(select(ModelAliasRow).where(ModelAliasRow.name == name)).all()
        out: dict[int, list[str]] = {}
        for r in rows:
            out.setdefault(r.version, []).append(r.alias)
        return {v: tuple(sorted(a)) for v, a in out.items()}

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        query = select(ModelVersionRow).order_by(ModelVersionRow.name, ModelVersionRow.version)
        if name is not None:
            query = query.where(ModelVersionRow.name == name)
        with self.db.session() as s:
            rows = s.scalars(query).all()
        aliases: dict[str, dict[int, tuple[str, ...]]] = {}
        for r in rows:
            if r.name not in aliases:
                aliases[r.name] = self._aliases(r.name)
        return [_entity(r, aliases[r.name].get(r.version, ())) for r in rows]

    def resolve(self, ref: str) -> ModelVersion:
        """``NAME`` (newest), ``NAME@3`` or ``NAME@alias``."""
        name, _, spec = ref.partition("@")
        check_model_name(name)
        with self.db.session() as s:
            if spec in ("", "latest"):
                version = s.scalar(
                    select(func.max(ModelVersionRow.version)).where(ModelVersionRow.name == name)
                )
            elif spec.isdigit():
                version = int(spec)
            else:
                alias = s.get(ModelAliasRow, (name, spec))
                if alias is None:
                    known = s.scalars(select(ModelAliasRow.alias).where(ModelAliasRow.name == name))
                    raise NotFoundError(
                        f"model {name!r} has no alias {spec!r}{did_you_mean(spec, known)}"
                    )
                version = alias.version
            row = s.get(ModelVersionRow, (name, version)) if version is not None else None
            if row is None:
                names = list(s.scalars(select(ModelVersionRow.name).distinct()))
                if name not in names:
                    raise NotFoundError(
                        f"no model named {name!r}{did_you_mean(name, names)}"
                        + ("" if names else " (none is registered yet: kennel train)")
                    )
                raise NotFoundError(f"model version {ref!r} not found")
        return _entity(row, self._aliases(name).get(row.version, ()))

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int | None,
        *,
        actor: str,
        reason: str,
        kind: str = "set",
        token: str | None = None,
    ) -> AliasEvent:
        """Point ``alias`` at ``version`` (None removes it); recorded with actor, reason and the
        kind of move. Aliases that an environment or a feed follows are moved only through
        ``kennel.deploy.policy.PolicyGate``, which checks the release policy first."""
        if not _ALIAS.match(alias) or alias.isdigit() or alias == "latest":
            raise ConfigError(f"invalid alias {alias!r}")
        with self.db.session() as s:
            if version is not None and s.get(ModelVersionRow, (name, version)) is None:
                raise NotFoundError(f"model version {name}@{version} not found")
            current = s.get(ModelAliasRow, (name, alias))
            before = current.version if current else None
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

    def read_file(self, model: ModelVersion, filename: str) -> bytes:
        if filename not in model.files:
            raise NotFoundError(f"{model.ref} has no file {filename!r}")
        return self.content.get(model.files[filename])  # hash-verified

    def read_json(self, model: ModelVersion, filename: str) -> dict[str, Any]:
        """A bundle's JSON file (e.g. its metadata), hash-verified and parsed."""
        value = json.loads(self.read_file(model, filename))
        if not isinstance(value, dict):
            raise NotFoundError(f"{model.ref}: {filename} is not a JSON object")
        return value

    def download(self, ref: str, dest: Path) -> tuple[ModelVersion, list[Path]]:
        """Write every bundle file under ``dest``, each verified against its sha256.

        All files are written into a temporary folder beside ``dest`` and moved into place only
        once every one has been read back and verified, so a tampered blob, a full disk or an
        interrupted download leaves ``dest`` as it was: never a bundle with some files missing
        or from another version. A new or empty ``dest`` appears by one rename.
        """
        model = self.resolve(ref)
        names = [check_key(filename) for filename in sorted(model.files)]
        if dest.exists() and not dest.is_dir():
            raise ConfigError(f"cannot download into {dest}: it exists and is not a folder")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
            umask = os.umask(0)
            os.umask(umask)
            staging.chmod(0o777 & ~umask)  # it may become DEST: a folder as mkdir makes it
        except OSError as exc:
            raise StorageError(f"cannot download into {dest}: {exc}") from exc
        try:
            for name in names:
                write_atomic(staging / name, self.read_file(model, name))  # hash-verified
            if not dest.exists() or not any(dest.iterdir()):
                os.replace(staging, dest)  # rename(2) may replace an empty folder
            else:
                for name in names:
                    (dest / name).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staging / name, dest / name)
        except OSError as exc:
            raise StorageError(f"cannot download {model.ref} into {dest}: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return model, [dest / name for name in names]
