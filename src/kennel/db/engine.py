"""Engine creation and schema upgrade. The real path always runs Alembic, never create_all.

A server database (PostgreSQL) gets a connection pool whose connections are checked before use
(``pool_pre_ping``) and recycled, a short connect timeout, and one retry policy: a session's
first connection, and the upgrade's, is retried with ``kennel.retry``'s bounded backoff while
the server refuses or drops connections (a restart, a failover). Work inside a transaction is
never retried here: only the caller knows whether it may run twice.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from kennel.db.audit import ANCHOR_KEY, AuditAnchor
from kennel.errors import ConfigError, MetadataError
from kennel.fsutil import take_lock_file
from kennel.retry import Backoff, first_line, retrying

_MIGRATIONS = Path(__file__).parent / "migrations"
# Serialises concurrent schema upgrades on PostgreSQL (any constant works; this spells "kennel").
_PG_MIGRATION_LOCK = 0x6B656E6E656C
# the databases kennel runs on (an error about a URL says so in these words)
SUPPORTED = "sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")  # user:PASSWORD@ in a URL that does not parse
# what a server says when it answers but will not let us in: not worth a retry
_REFUSED = re.compile(
    r'(database|role) "[^"]*" does not exist|password authentication failed for user "[^"]*"'
    r'|no pg_hba\.conf entry[^"]*"[^"]*"|invalid port number: "[^"]*"'
)
BACKOFF = Backoff(attempts=4, base_s=0.25, cap_s=2.0)
CONNECT_TIMEOUT_S = 5
# a pool per process: serving threads, the prediction log's writer and the monitor share it
POOL = {"pool_size": 5, "max_overflow": 10, "pool_timeout": 30, "pool_recycle": 1800}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def database_url(url: str, what: str) -> URL:
    """``url`` parsed, if kennel can use it; else a one-line ConfigError that names ``what``
    (the setting or option it came from), the URL (never its password) and what would do."""
    try:
        parsed = make_url(url)
    except (SQLAlchemyError, ValueError) as exc:  # ValueError: a port that is not a number
        shown = _PASSWORD.sub(r"\1***@", url)
        raise ConfigError(f"{what}: {shown!r} is not a database URL; use {SUPPORTED}") from exc
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ConfigError(f"{what}: {shown!r}: port {parsed.port} is not 1-65535")
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"{what}: {shown!r}: {backend} databases are not supported; use {SUPPORTED}"
        )
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(
            f"{what}: {url!r} is an in-memory database, gone when the command ends; use {SUPPORTED}"
        )
    try:
        parsed.get_dialect().import_dbapi()
    except (ImportError, SQLAlchemyError) as exc:
        raise ConfigError(
            f"{what}: {shown!r} needs a driver that is not installed ({first_line(exc)}); "
            f"use {SUPPORTED}"
        ) from exc
    return parsed


def make_engine(url: str, *, what: str = "store.metadata_url") -> Engine:
    parsed = database_url(url, what)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            folder = Path(database).parent
            try:  # its own folder only: a mistyped path makes no tree of empty projects
                folder.mkdir(exist_ok=True)
            except FileNotFoundError as exc:
                raise MetadataError(
                    f"{what}: {folder.parent} does not exist, so the SQLite database "
                    f"{database} cannot be made there (a mistyped path?)"
                ) from exc
            except OSError as exc:  # as unreachable as a file SQLite cannot open there
                raise MetadataError(
                    f"{what}: cannot make {folder}, the folder of the SQLite database "
                    f"{database}: {exc.strerror or exc}"
                ) from exc
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **POOL)


def where(url: URL) -> str:
    """host:port/database of a URL, never its password (for messages)."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    host = url.host or "localhost"
    return f"{host}:{url.port}/{url.database or ''}" if url.port else f"{host}/{url.database or ''}"


def _permanent(exc: BaseException) -> str | None:
    """What the server said when it answered but will not let us in (no such database or role,
    a wrong password): trying again cannot help. None for anything else."""
    found = _REFUSED.search(str(getattr(exc, "orig", None) or exc))
    return found.group(0) if found else None


def _disconnected(exc: BaseException) -> bool:
    """The server refused, dropped or timed out the connection (not a bad query: only opening
    a connection is retried, and that runs no SQL of the caller's)."""
    if _permanent(exc):
        return False
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError)


def connect(engine: Engine, begin: Any, what: str, database: str = "metadata database") -> Any:
    """``begin()`` (opens a connection), retried while the server is unreachable; then a
    one-line MetadataError naming the database (host:port/name, no password). A server that
    answers but refuses us (no such database or role, a wrong password) is not retried."""
    backoff = Backoff(attempts=1) if engine.dialect.name == "sqlite" else BACKOFF
    try:
        return retrying(begin, transient=_disconnected, backoff=backoff, what=what)
    except SQLAlchemyError as exc:
        refused = _permanent(exc)
        if refused:
            raise MetadataError(
                f"the {database} at {where(engine.url)} refuses the connection: {refused}"
            ) from exc
        if not _disconnected(exc):
            raise
        raise MetadataError(
            f"cannot reach the {database} at {where(engine.url)} "
            f"(tried {backoff.attempts} times): {first_line(getattr(exc, 'orig', None) or exc)}"
        ) from exc


_REVISION = re.compile(r'^(down_revision|revision)\s*=\s*(None|"([^"]*)")\s*$', re.MULTILINE)


@functools.cache
def migrations_head() -> str | None:
    """The newest revision of this kennel's migrations, read from their files without Alembic
    (importing it is a third of a short command's start); None when they do not form one
    simple chain, which leaves the question to Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (_MIGRATIONS / "versions").glob("*.py"):
        found = {m[1]: m[3] for m in _REVISION.finditer(path.read_text(encoding="utf-8"))}
        if "revision" not in found or "down_revision" not in found:
            return None
        revisions.add(found["revision"])
        if found["down_revision"]:
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def _at_head(engine: Engine) -> bool:
    """Whether the database is at this kennel's head revision already: one read, no Alembic."""
    head = migrations_head()
    if head is None:
        return False
    connection = connect(engine, engine.connect, "open the metadata database")
    try:
        with connection:
            current = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:  # no table yet (a new database), or anything odd: ask Alembic
        return False
    return [row[0] for row in current] == [head]


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent, safe to run concurrently).
    A database a newer kennel has upgraded past this one's migrations is left alone: a one-line
    MetadataError says so. One already at the newest revision is left as it is without
    loading Alembic."""
    if _at_head(engine):
        return
    with _one_upgrade_at_a_time(engine):
        if not _at_head(engine):  # another process may have upgraded it while this waited
            _upgrade(engine)


@contextmanager
def _one_upgrade_at_a_time(engine: Engine) -> Iterator[None]:
    """SQLite makes tables outside any transaction, so processes opening a new database at
    once each made them ("table audit_log already exists", exit 10): a ``flock`` beside the
    database holds the others until one is done, and is removed while held, as a lease's is
    (PostgreSQL's upgrade holds an advisory lock in its transaction instead)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    path = Path(f"{database}.locks") / "upgrade.lock"
    fd = take_lock_file(path, wait=True)
    assert fd is not None  # waited for
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _upgrade(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    connection = connect(engine, engine.connect, "open the metadata database")
    try:
        with connection, connection.begin():
            if engine.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
                )
            else:  # Python's sqlite3 runs CREATE TABLE outside any transaction unless one is
                # open: opened here, so a kill -9 midway leaves no half-made schema behind
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            known = {r.revision for r in script.walk_revisions()}
            current = MigrationContext.configure(connection).get_current_heads()
            unknown = [r for r in current if r not in known]
            if unknown:
                raise MetadataError(
                    f"the metadata database at {where(engine.url)} is at schema revision "
                    f"{', '.join(unknown)}, newer than this kennel (head "
                    f"{script.get_current_head()}): upgrade kennel"
                )
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise MetadataError(
            f"cannot upgrade the metadata schema at {where(engine.url)}: {first_line(exc)}"
        ) from exc


def open_engine(url: str) -> Engine:
    engine = make_engine(url)
    try:
        upgrade(engine)
    except BaseException:
        engine.dispose()  # its pool holds the connection the upgrade used
        raise
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
            if self.engine.dialect.name != "sqlite":  # a server: connect first, with retries
                connect(self.engine, session.connection, "start a metadata session")
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            # the first line only: SQLAlchemy goes on with the statement and its parameters,
            # which are nobody's business on a page or a terminal (the cause keeps them)
            said = " ".join(str(exc).split("\n", 1)[0].split())
            raise MetadataError(
                f"metadata database error: {exc.__class__.__name__}: {said}"
            ) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
