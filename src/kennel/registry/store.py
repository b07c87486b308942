"""Registered model versions in the metadata DB, their files in the content store.

Version numbers are assigned inside the inserting transaction and retried on conflict, so
concurrent registrations get distinct, consecutive numbers (no duplicate, no gap); see
``kennel.db.registry.RegistryStore``. Every alias move is kept as an alias event and in the
audit chain.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kennel.db import MAX_NUMBER, Database
from kennel.db.registry import RegistryStore
from kennel.digits import ascii_number
from kennel.errors import (
    AlreadyExistsError,
    ConfigError,
    NotFoundError,
    StorageError,
    did_you_mean,
)
from kennel.fsutil import write_atomic
from kennel.registry.entities import AliasEvent, ModelVersion
from kennel.storage import ContentStore, check_key

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")


def check_model_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"invalid model name {name!r}: letters, digits, '.', '_', '-'")
    return name


class ModelRegistry:
    def __init__(self, db: Database, content: ContentStore) -> None:
        self.db = db
        self.content = content
        self.store = RegistryStore(db)

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

        def files_for(version: int) -> dict[str, str]:
            # Built and stored once per number: a retry after a conflict reuses them.
            if version not in cache:
                files = make_files(version)
                cache[version] = {
                    check_key(fname): self.content.put(data) for fname, data in files.items()
                }
            return cache[version]

        return self.store.add_version(
            name,
            files_for,
            run_id=run_id,
            dataset=dataset,
            dataset_version=dataset_version,
            metrics=metrics,
            gates_passed=gates_passed,
            gate_reasons=gate_reasons,
            actor=actor,
        )

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        return self.store.versions(name)

    def resolve(self, ref: str) -> ModelVersion:
        """``NAME`` (newest), ``NAME@3`` or ``NAME@alias``."""
        name, at, spec = ref.partition("@")
        check_model_name(name)
        if at and not spec:  # malformed, like "../x@1": bad input (exit 2), not a missing model
            raise ConfigError(
                f"no version or alias after '@' in {ref!r}: use {name}, {name}@N or {name}@ALIAS"
            )
        if spec.lower() in ("", "latest"):  # Latest too: no alias may be so named
            version = self.store.latest_version(name)
        elif re.fullmatch(r"[0-9]+", spec):
            version = int(spec)
            if version > MAX_NUMBER:
                raise NotFoundError(f"model version {ref!r} not found")
        elif not _ALIAS.match(spec):  # "pets@@", "pets@-1", "pets@1@2": no alias is so named
            raise ConfigError(
                f"{ref!r}: {spec!r} is neither a version number nor an alias name (a letter, "
                "then letters, digits, '_' or '-')"
            )
        else:
            version = self.store.alias_target(name, spec)
            if version is None:
                known = self.store.alias_names(name)
                raise NotFoundError(
                    f"model {name!r} has no alias {spec!r}{did_you_mean(spec, known)}"
                )
        model = self.store.get(name, version) if version is not None else None
        if model is None:
            names = self.store.names()
            if name not in names:
                raise NotFoundError(
                    f"no model named {name!r}{did_you_mean(name, names)}"
                    + ("" if names else " (none is registered yet: kennel train)")
                )
            raise NotFoundError(f"model version {ref!r} not found")
        return model

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
        require_change: bool = False,
        expect_from: int | None = None,
        guard: Callable[[], None] | None = None,
    ) -> AliasEvent:
        """Point ``alias`` at ``version`` (None removes it); recorded with actor, reason and the
        kind of move (``expect_from``: only if the alias still names that version; ``guard``:
        a check made under the alias's lock, see ``RegistryStore.move_alias``). Aliases
        that an environment or a feed follows are moved only through
        ``kennel.deploy.policy.PolicyGate``, which checks the release policy first."""
        if not _ALIAS.match(alias) or ascii_number(alias) is not None or alias.lower() == "latest":
            raise ConfigError(f"invalid alias {alias!r}")
        return self.store.move_alias(
            name,
            alias,
            version,
            actor=actor,
            reason=reason,
            kind=kind,
            token=token,
            require_change=require_change,
            expect_from=expect_from,
            guard=guard,
        )

    def alias_names(self, name: str) -> list[str]:
        return self.store.alias_names(name)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        return self.store.alias_history(name, alias)

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

    def download(
        self, ref: str, dest: Path, *, overwrite: bool = False
    ) -> tuple[ModelVersion, list[Path]]:
        """Write every bundle file under ``dest``, each verified against its sha256.

        ``dest`` must be new or empty unless ``overwrite``: then the bundle's files replace
        those of the same name there and every other file stays.

        All files are written into a temporary folder beside ``dest`` and moved into place only
        once every one has been read back and verified, so a tampered blob, a full disk or an
        interrupted download leaves ``dest`` as it was: never a bundle with some files missing
        or from another version. A new or empty ``dest`` appears by one rename.
        """
        model = self.resolve(ref)
        names = [check_key(filename) for filename in sorted(model.files)]
        if dest.exists() and not dest.is_dir():
            raise ConfigError(f"cannot download into {dest}: it exists and is not a folder")
        if dest.is_symlink():  # the folder it names: the bundle is put together beside that
            try:
                dest = dest.resolve()
            except (RuntimeError, OSError) as exc:  # a loop of links
                raise ConfigError(f"cannot download into {dest}: {exc}") from exc
        if not overwrite and dest.is_dir() and any(dest.iterdir()):
            raise AlreadyExistsError(
                f"cannot download into {dest}: the folder is not empty (its files of the same "
                "name would be replaced); give a new or empty folder, or overwrite (--force)"
            )
        _replaceable(dest, names)  # before the first file moves: all of them or none
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


def _replaceable(dest: Path, names: list[str]) -> None:
    """ConfigError unless each of ``names`` can be put at its place under ``dest``: no folder
    (or anything but a file) where a file goes, no file where its folders go."""
    for name in names:
        target = dest / name
        for folder in reversed(target.parents):
            inside = folder.is_relative_to(dest) and folder != dest
            if inside and (folder.is_symlink() or (folder.exists() and not folder.is_dir())):
                raise ConfigError(
                    f"cannot download into {dest}: {folder} is not a folder of its own, where "
                    f"the bundle's {name} goes"
                )
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise ConfigError(
                f"cannot download into {dest}: {target} is not a plain file the bundle's "
                f"{name} may replace"
            )
