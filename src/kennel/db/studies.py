"""Where shared Optuna studies live: a PostgreSQL schema of their own beside kennel's tables.

Optuna's RDB storage brings its own tables, among them an ``alembic_version`` that must never
meet kennel's, so a project's studies go to ``<schema>_optuna`` in the metadata database
(``kennel_optuna`` when the metadata URL does not pin a schema with ``search_path``). SQLite
is refused: a study that machines share needs a database they can all reach.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from kennel.db.engine import where
from kennel.errors import ConfigError, MetadataError

_SEARCH_PATH = re.compile(r"-c\s*search_path\s*=\s*([^\s]+)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# Serialises the creation of the studies schema and Optuna's tables ("kntune" in ASCII).
_CREATE_LOCK = 0x6B6E74756E65
_HAS_TABLES = "SELECT to_regclass('studies') IS NOT NULL AND to_regclass('trials') IS NOT NULL"


def _parse(url: str, what: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"{what}: not a database URL") from exc


def shown(url: str) -> str:
    """The study store as kennel's other errors name a database: ``host:port/name`` (never a
    user, a password or the ``search_path`` options)."""
    try:
        return where(make_url(url))
    except (ArgumentError, ValueError):
        return "<not a database URL>"


def storage_url(metadata_url: str, override: str | None = None) -> str:
    """The Optuna storage URL for a project's shared studies: ``override`` (kennel.yaml's
    ``train.search.storage``) as given, else the metadata database with ``search_path`` set to
    the studies schema."""
    chosen = _parse(override or metadata_url, "train.search.storage" if override else "metadata")
    if chosen.get_backend_name() != "postgresql":
        where = "train.search.storage" if override else "store.metadata_url"
        raise ConfigError(
            f"a study shared by workers needs PostgreSQL, and {where} is "
            f"{chosen.get_backend_name()}: point store.metadata_url at a postgresql+psycopg:// "
            "URL (or tune in one process: kennel train --trials N)"
        )
    if override:
        return override
    options = chosen.query.get("options", "")
    options = options if isinstance(options, str) else " ".join(options)
    found = _SEARCH_PATH.search(options)
    base = found.group(1).split(",")[0].strip('"') if found else "kennel"
    schema = f"{base}_optuna"
    if not _IDENTIFIER.fullmatch(schema):
        raise ConfigError(f"store.metadata_url: schema {base!r} is not a plain SQL identifier")
    rest = _SEARCH_PATH.sub("", options).strip()
    pinned = f"{rest} -csearch_path={schema}".strip()
    return chosen.update_query_dict({"options": pinned}).render_as_string(hide_password=False)


def schema_of(url: str) -> str | None:
    """The schema a URL pins with ``search_path``, if it does."""
    options = make_url(url).query.get("options", "")
    found = _SEARCH_PATH.search(options if isinstance(options, str) else " ".join(options))
    return found.group(1).split(",")[0].strip('"') if found else None


def _unreachable(url: str, exc: SQLAlchemyError) -> MetadataError:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return MetadataError(f"cannot reach the study store at {shown(url)}: {reason}")


def has_studies(url: str) -> bool:
    """Whether any study was ever created at ``url`` (its schema holds Optuna's tables);
    MetadataError, naming the store without its password, when it cannot be reached."""
    engine = create_engine(url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as connection:
            found = connection.execute(text(_HAS_TABLES)).scalar()
    except SQLAlchemyError as exc:
        raise _unreachable(url, exc) from exc
    finally:
        engine.dispose()
    return bool(found)


@contextmanager
def creating(url: str) -> Iterator[None]:
    """Hold the studies lock while the body creates Optuna's tables (concurrent creators of
    the same tables collide on PostgreSQL's catalogue); the schema exists when it runs."""
    engine = create_engine(url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _CREATE_LOCK})
            try:
                schema = schema_of(url)
                if schema is not None:
                    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                    connection.commit()
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _CREATE_LOCK})
                connection.commit()
    except SQLAlchemyError as exc:
        raise _unreachable(url, exc) from exc
    finally:
        engine.dispose()


_TRIAL_TABLES = (
    "trial_params",
    "trial_values",
    "trial_intermediate_values",
    "trial_user_attributes",
    "trial_system_attributes",
    "trial_heartbeats",
)


def drop_waiting(engine: Engine, study_id: int, keep: int) -> int:
    """Delete the study's waiting (never started) trials numbered ``keep`` or more, in one
    transaction; how many went. Only for a study whose creation was interrupted: no worker
    joins one, so its trials are all waiting and numbered from 0."""
    chosen = (
        "SELECT trial_id FROM trials WHERE study_id = :s AND number >= :k AND state = 'WAITING'"
    )
    params = {"s": study_id, "k": keep}
    with engine.begin() as connection:
        for table in _TRIAL_TABLES:
            connection.execute(text(f"DELETE FROM {table} WHERE trial_id IN ({chosen})"), params)
        gone = connection.execute(text(f"DELETE FROM trials WHERE trial_id IN ({chosen})"), params)
    return gone.rowcount
