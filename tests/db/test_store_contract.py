"""The metadata store suite, run on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, text, update

from kennel.datasets.manifest import Row
from kennel.datasets.versioning import DatasetCatalog
from kennel.db import Database, open_engine
from kennel.db.audit import record, verify
from kennel.db.schema import AuditRow
from kennel.errors import AmbiguousRefError, ConfigError, NotFoundError
from kennel.storage import open_content_store


def _row(i: int, label: str = "cat", split: str = "train") -> Row:
    return Row(f"/lake/{i}.jpg", f"{i:064x}", label, split, 10, 10, 1.0, 2.0, 3.0, "0" * 16, "{}")


@pytest.fixture
def catalog(metadata_url: str, tmp_path: Path) -> Iterator[DatasetCatalog]:
    db = Database.open(metadata_url)
    yield DatasetCatalog(db, open_content_store(str(tmp_path / "a")))
    db.dispose()


def test_upgrade_is_idempotent(metadata_url: str) -> None:
    engine = open_engine(metadata_url)
    open_engine(metadata_url).dispose()
    with engine.connect() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    from alembic.script import ScriptDirectory

    from kennel.db.engine import _MIGRATIONS

    assert revision == ScriptDirectory(str(_MIGRATIONS)).get_current_head()


def test_migrations_match_the_orm_schema(metadata_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from kennel.db.schema import Base

    engine = open_engine(metadata_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_versions_commit_resolve_and_list(catalog: DatasetCatalog) -> None:
    catalog.ensure_dataset("pets")
    v1, created = catalog.commit(
        "pets", [_row(1), _row(2, "dog")], parent=None, ingest_run_id=None, summary={}, actor="t"
    )
    assert created and v1.seq == 1 and v1.counts == {"cat": {"train": 1}, "dog": {"train": 1}}
    again, created = catalog.commit(
        "pets", [_row(2, "dog"), _row(1)], parent=None, ingest_run_id=None, summary={}, actor="t"
    )
    assert not created and again.id == v1.id  # same content in any order: same version
    v2, _ = catalog.commit(
        "pets",
        [_row(1), _row(2, "dog"), _row(3)],
        parent=v1,
        ingest_run_id=None,
        summary={},
        actor="t",
    )
    assert v2.seq == 2 and v2.parent_id == v1.id
    assert catalog.resolve("pets").id == v2.id
    assert catalog.resolve("pets@latest").id == v2.id
    assert catalog.resolve("pets@v1").id == v1.id
    assert catalog.resolve(f"pets@{v1.id[:8]}").id == v1.id
    assert [r.uri for r in catalog.rows(v2)] == ["/lake/1.jpg", "/lake/2.jpg", "/lake/3.jpg"]
    assert [v.seq for v in catalog.versions("pets")] == [1, 2]
    d = catalog.diff(v1, v2)
    assert [r.uri for r in d.added] == ["/lake/3.jpg"] and not d.removed


def test_resolve_errors(catalog: DatasetCatalog) -> None:
    catalog.ensure_dataset("pets")
    with pytest.raises(NotFoundError, match="no versions"):
        catalog.resolve("pets")
    with pytest.raises(NotFoundError):
        catalog.resolve("ghost@v1")
    with pytest.raises(ConfigError, match="invalid dataset name"):
        catalog.resolve("../etc@v1")
    with pytest.raises(ConfigError) as long_name:  # named in a line, not echoed whole
        catalog.resolve("a" * 5000 + "!@v1")
    assert len(str(long_name.value)) < 200 and "(5001 characters)" in str(long_name.value)
    parent = None
    for i in range(40):  # enough versions that some share a first hex digit
        parent, _ = catalog.commit(
            "pets", [_row(i)], parent=parent, ingest_run_id=None, summary={}, actor="t"
        )
    firsts = [v.id[:4] for v in catalog.versions("pets")]
    prefix = next((p for p in firsts if firsts.count(p) > 1), None)
    if prefix is None:  # no 4-digit collision: check the exact-length rule instead
        with pytest.raises(ConfigError, match="at least 4 hex digits"):  # malformed: exit 2
            catalog.resolve("pets@abc")
    else:
        with pytest.raises(AmbiguousRefError):
            catalog.resolve(f"pets@{prefix}")


def test_audit_chain_detects_edits_and_deletes(metadata_url: str) -> None:
    db = Database.open(metadata_url)
    with db.session() as s:
        for i in range(5):
            record(s, actor="alice", action="test.step", subject=f"thing-{i}", details={"i": i})
    with db.session() as s:
        assert verify(s).ok and verify(s).checked == 5
    with db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.seq == 3).values(actor="mallory"))
    with db.session() as s:
        verdict = verify(s)
    assert not verdict.ok and "entry 3" in (verdict.problem or "")
    with db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.seq == 3).values(actor="alice"))
        assert verify(s).ok
        s.execute(delete(AuditRow).where(AuditRow.seq == 4))
    with db.session() as s:
        verdict = verify(s)
    assert not verdict.ok and "missing" in (verdict.problem or "")
    db.dispose()
