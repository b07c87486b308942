"""PostgreSQL connection failures, made real by a TCP relay in front of the server: dropped
connections and a server that starts late are retried at session start with bounded backoff;
a server that never answers is one line naming it (host:port/database, never the password)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from kennel.db import Database
from kennel.db.engine import BACKOFF, CONNECT_TIMEOUT_S, make_engine
from kennel.errors import MetadataError
from tests.netfaults import Proxy
from tests.serving import free_port


def _via(pg_url: str, port: int) -> str:
    return pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")


@pytest.fixture
def proxy(pg_url: str) -> Iterator[Proxy]:
    relay = Proxy(("127.0.0.1", 5432))
    yield relay
    relay.close()


def _tables(db: Database) -> int:
    with db.session() as s:
        return int(s.execute(text("SELECT count(*) FROM alembic_version")).scalar_one())


def test_dropped_connections_are_retried(pg_url: str, proxy: Proxy) -> None:
    proxy.drop(2)  # the first two connections are reset as they open
    db = Database.open(_via(pg_url, proxy.port))
    try:
        assert proxy.accepted >= 3
        assert _tables(db) == 1
        proxy.cut()  # a restart: every pooled connection dies...
        proxy.restore()
        proxy.drop(2)  # ...and the first reconnections fail too
        assert _tables(db) == 1  # the next session still starts
    finally:
        db.dispose()


def test_a_database_that_starts_late_is_waited_for(pg_url: str) -> None:
    late = Proxy(("127.0.0.1", 5432), listen_after=0.4)
    try:
        db = Database.open(_via(pg_url, late.port))
        assert _tables(db) == 1
        db.dispose()
    finally:
        late.close()


def test_an_unreachable_database_is_one_line_naming_it(pg_url: str) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://kennel:s3cret-pw@127.0.0.1:{port}/test"
    began = time.monotonic()
    with pytest.raises(MetadataError) as failed:
        Database.open(url)
    assert time.monotonic() - began < BACKOFF.budget_s + BACKOFF.attempts * CONNECT_TIMEOUT_S
    message = str(failed.value)
    assert f"127.0.0.1:{port}/test" in message and "\n" not in message
    assert "s3cret" not in message and "kennel:" not in message


def test_pool_settings(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        assert engine.pool._pre_ping  # type: ignore[attr-defined]
        assert engine.pool.size() == 5  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_a_refused_statement_is_the_drivers_first_line_without_the_sql(pg_url: str) -> None:
    """A value PostgreSQL refuses (a NUL in text) once reached a dashboard page with the SQL
    statement and its parameters; the error is the driver's own first line."""
    db = Database.open(pg_url)
    try:
        with pytest.raises(MetadataError) as refused, db.session() as s:
            s.execute(text("SELECT CAST(:v AS text)"), {"v": "secret\x00value"})
    finally:
        db.dispose()
    said = str(refused.value)
    assert said.startswith("metadata database error: DataError: ") and "NUL" in said, said
    assert "\n" not in said and "[SQL" not in said and "secret" not in said, said
