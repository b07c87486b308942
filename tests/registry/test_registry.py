"""Registry suite, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kennel.db import Database
from kennel.errors import ConfigError, IntegrityError, NotFoundError
from kennel.registry.store import ModelRegistry
from kennel.storage import digest_key, open_content_store


@pytest.fixture
def registry(metadata_url: str, tmp_path: Path) -> Iterator[ModelRegistry]:
    db = Database.open(metadata_url)
    yield ModelRegistry(db, open_content_store(str(tmp_path / "artifacts")))
    db.dispose()


def _register(registry: ModelRegistry, name: str = "pets", passed: bool = True) -> int:
    model = registry.register(
        name,
        lambda v: {"model.onnx": f"onnx-{v}".encode(), "kennel-model.json": b"{}"},
        run_id=None,
        dataset="d",
        dataset_version="v",
        metrics={"accuracy": 0.9},
        gates_passed=passed,
        gate_reasons=[] if passed else ["accuracy too low"],
        actor="t",
    )
    return model.version


def test_twenty_concurrent_registrations_get_consecutive_versions(registry: ModelRegistry) -> None:
    versions: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            versions.append(_register(registry))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(versions) == list(range(1, 21))
    assert [m.version for m in registry.versions("pets")] == list(range(1, 21))
    # each bundle was built for its own number
    assert registry.read_file(registry.resolve("pets@7"), "model.onnx") == b"onnx-7"


def test_aliases_keep_full_history(registry: ModelRegistry) -> None:
    for _ in range(3):
        _register(registry)
    registry.set_alias("pets", "champion", 1, actor="alice", reason="first good one")
    registry.set_alias("pets", "champion", 3, actor="bob", reason="better recall")
    registry.set_alias("pets", "staging", 2, actor="ci", reason="deploy")
    assert registry.resolve("pets@champion").version == 3
    assert registry.resolve("pets@3").aliases == ("champion",)
    history = registry.alias_history("pets", "champion")
    assert [(e.from_version, e.to_version, e.actor, e.reason) for e in history] == [
        (None, 1, "alice", "first good one"),
        (1, 3, "bob", "better recall"),
    ]
    registry.set_alias("pets", "staging", None, actor="ci", reason="retired")
    with pytest.raises(NotFoundError):
        registry.resolve("pets@staging")
    with pytest.raises(NotFoundError):
        registry.set_alias("pets", "champion", 99, actor="x", reason="y")
    with pytest.raises(ConfigError):
        registry.set_alias("pets", "7", 1, actor="x", reason="numeric aliases would be ambiguous")


def test_download_verifies_every_file(registry: ModelRegistry, tmp_path: Path) -> None:
    _register(registry)
    model, files = registry.download("pets@1", tmp_path / "out")
    assert sorted(f.name for f in files) == ["kennel-model.json", "model.onnx"]
    assert (tmp_path / "out" / "model.onnx").read_bytes() == b"onnx-1"
    blob = Path(str(registry.content.blobs.url)) / digest_key(model.files["model.onnx"])
    blob.write_bytes(b"tampered")
    with pytest.raises(IntegrityError):
        registry.download("pets@1", tmp_path / "again")


def test_resolve_errors(registry: ModelRegistry) -> None:
    with pytest.raises(NotFoundError):
        registry.resolve("ghost")
    _register(registry, passed=False)
    model = registry.resolve("pets")
    assert not model.gates_passed and model.gate_reasons == ["accuracy too low"]
    with pytest.raises(NotFoundError):
        registry.resolve("pets@nosuchalias")
    with pytest.raises(ConfigError):
        registry.resolve("../x@1")
    # a bare '@' names no version: it was read as the newest, silently
    with pytest.raises(ConfigError, match="no version or alias after '@'"):
        registry.resolve("pets@")
    for malformed in ("pets@@", "pets@ ", "pets@1@2", "pets@-1", "pets@prod\n"):
        with pytest.raises(ConfigError, match="neither a version number nor an alias"):
            registry.resolve(malformed)
    with pytest.raises(ConfigError, match="invalid model name"):
        registry.resolve("pets\n@1")  # a name's pattern holds to its very end
