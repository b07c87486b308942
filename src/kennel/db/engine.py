"""Engine creation and schema upgrade. The real path always runs Alembic, never create_all."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from kennel.db.audit import ANCHOR_KEY, AuditAnchor
from kennel.errors import MetadataError

_MIGRATIONS = Path(__file__).parent / "migrations"
# Serialises concurrent schema upgrades on PostgreSQL (any constant works; this spells "kennel").
_PG_MIGRATION_LOCK = 0x6B656E6E656C


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except SQLAlchemyError as exc:
        raise MetadataError(f"invalid metadata URL {url!r}") from exc
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent, safe to run concurrently)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
                )
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise MetadataError(f"cannot upgrade metadata schema at {engine.url!r}: {exc}") from exc


def open_engine(url: str) -> Engine:
    engine = make_engine(url)
    upgrade(engine)
    return engine


class Database:
    """An upgraded engine plus a session factory; one short session per operation.

    ``audit_anchor`` (kept outside the database, see ``kennel.db.audit``) receives the head of
    the audit chain after each commit that appended to it, and is what ``verify`` checks."""

    def __init__(self, engine: Engine, *, audit_anchor: AuditAnchor | None = None) -> None:
        self.engine = engine
        self.audit_anchor = audit_anchor
        info = {ANCHOR_KEY: audit_anchor} if audit_anchor is not None else {}
        self._sessions = sessionmaker(engine, expire_on_commit=False, info=info)

    @classmethod
    def open(cls, url: str, *, audit_anchor: AuditAnchor | None = None) -> Database:
        return cls(open_engine(url), audit_anchor=audit_anchor)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error, errors wrapped."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise MetadataError(
                f"metadata database error: {exc.__class__.__name__}: {exc}"
            ) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
