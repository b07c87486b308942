"""Plain, frozen views of registry rows (ORM rows never leave the store)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


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
