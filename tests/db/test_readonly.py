"""Opening a SQLite database only to read it, whatever mode its URL asks for."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from kennel.db.readonly import connect_read_only, read_only_uri, sqlite_file


def test_a_file_uri_of_the_urls_own_is_opened_read_only(tmp_path: Path) -> None:
    db = tmp_path / "a b.db"
    with sqlite3.connect(db) as made:
        made.execute("CREATE TABLE t (x INTEGER)")
    made.close()
    for url in (f"sqlite:///{db}", "sqlite:///file:" + db.as_uri().removeprefix("file://")
                + "?mode=rwc&cache=shared&timeout=5&uri=true"):  # fmt: skip
        parsed = make_url(url)
        assert sqlite_file(parsed) == db
        assert "mode=ro" in read_only_uri(parsed) and "rwc" not in read_only_uri(parsed)
        assert "timeout" not in read_only_uri(parsed)  # the driver's, not the URI's
        connection = connect_read_only(parsed)
        try:
            assert connection.execute("SELECT count(*) FROM t").fetchone() == (0,)
            with pytest.raises(sqlite3.OperationalError, match="readonly database"):
                connection.execute("INSERT INTO t VALUES (1)")
        finally:
            connection.close()
