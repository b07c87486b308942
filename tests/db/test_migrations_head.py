"""Opening a database that is at the newest schema revision skips Alembic entirely; the head
it compares with is read from the migration files and must be the one Alembic computes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from kennel.db import engine as db_engine
from kennel.errors import MetadataError

OPEN_TWICE = """
import sys
from kennel.db import Database
url = sys.argv[1]
Database.open(url).engine.dispose()
print("alembic" in sys.modules)
"""


def test_migrations_head_is_alembics_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(db_engine._MIGRATIONS))
    assert db_engine.migrations_head() == ScriptDirectory.from_config(cfg).get_current_head()


def test_a_database_at_head_opens_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"

    def opened() -> str:
        done = subprocess.run(
            [sys.executable, "-c", OPEN_TWICE, url], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    assert opened() == "True"  # a new database: Alembic creates the schema
    assert opened() == "False"  # at head: one read of alembic_version, nothing imported


def test_a_database_not_at_head_still_goes_through_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    db_engine.Database.open(url).engine.dispose()
    engine = db_engine.make_engine(url)
    assert db_engine._at_head(engine)
    with engine.begin() as connection:  # as a newer kennel would leave it
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    assert not db_engine._at_head(engine)
    engine.dispose()
    with pytest.raises(MetadataError, match="9999, newer than this kennel"):
        db_engine.Database.open(url)


OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from kennel.db import Database
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
Database.open(sys.argv[1]).dispose()
"""


def test_processes_opening_a_new_sqlite_database_at_once_all_open_it(tmp_path: Path) -> None:
    """SQLite makes tables outside a transaction: six commands run at once on a new project
    each made them, and all but one failed ("table audit_log already exists", exit 10)."""
    for round_ in range(3):
        db, go = tmp_path / f"r{round_}" / "kennel.db", tmp_path / f"go{round_}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_AT_ONCE, f"sqlite:///{db}", str(go)],
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        go.touch()
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, errors
        assert list(Path(f"{db}.locks").iterdir()) == []  # the lock leaves no file behind


DIES_MIDWAY = """
import os, sys
from alembic.operations import Operations
made = Operations.create_table
def create_table(self, *args, **kwargs):
    if create_table.calls == 5:
        os._exit(9)  # as kill -9 would: no rollback, no cleanup
    create_table.calls += 1
    return made(self, *args, **kwargs)
create_table.calls = 0
Operations.create_table = create_table
from kennel.db import Database
Database.open(sys.argv[1])
"""


def test_a_first_upgrade_killed_midway_leaves_nothing_half_made(tmp_path: Path) -> None:
    """SQLite's tables were made outside a transaction: a first command killed after five
    tables left them, and every later command failed ("table audit_log already exists")."""
    url = f"sqlite:///{tmp_path / 'kennel.db'}"
    died = subprocess.run([sys.executable, "-c", DIES_MIDWAY, url], capture_output=True)
    assert died.returncode == 9, died.stderr
    from kennel.db import Database

    Database.open(url).dispose()  # the next command makes the whole schema
    assert db_engine._at_head(db_engine.make_engine(url))
