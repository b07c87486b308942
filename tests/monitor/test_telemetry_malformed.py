"""Bad input: malformed telemetry readings, on SQLite and PostgreSQL. A reading that is not a
finite number, has the wrong type, a name too long for its column, or one the database
itself refuses costs only itself: the rest of its batch is stored, each refused one is named,
and rows already stored as NaN or an infinity never reach a read."""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import psutil
import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import literal_column, text
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db import Database
from kennel.db.schema import TelemetryRow
from kennel.db.telemetry import Sample, TelemetryStore
from kennel.errors import MetadataError, RowsRefusedError, status_of
from kennel.monitor import telemetry
from kennel.monitor.telemetry_ingest import TelemetryIngestor
from kennel.wiring import Workspace
from tests.conftest import make_project
from tests.serving import wait_until

NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW_BACK = timedelta(hours=1)
WINDOW = {"since": NOW - WINDOW_BACK, "until": NOW + timedelta(hours=1)}


@pytest.fixture
def db(metadata_url: str) -> Iterator[Database]:
    database = Database.open(metadata_url)
    yield database
    database.dispose()


def _good(n: int, source: str = "cam-01") -> list[Sample]:
    return [Sample(NOW - timedelta(seconds=n - i), source, "temperature", 20.0 + i / 10)
            for i in range(n)]  # fmt: skip


def _stored(db: Database) -> list[tuple[str, str, float]]:
    return sorted((s.source, s.metric, s.value) for s in TelemetryStore(db).between(**WINDOW))


def test_a_batch_keeps_its_good_readings_and_names_each_malformed_one(db: Database) -> None:
    good = _good(10)
    bad = [
        Sample(NOW, "cam-01", "temperature", math.nan),
        Sample(NOW, "cam-01", "temperature", math.inf),
        Sample(NOW, "cam-01", "humidity", -math.inf),
        Sample(NOW, "cam-01", "temperature", "hot"),  # type: ignore[arg-type]
        Sample(NOW, "cam-01", "temperature", True),
        Sample(NOW, "cam-01", "t" * 65, 1.0),  # the metric column holds 64
        Sample(NOW, "c" * 129, "temperature", 1.0),  # the source column holds 128
        Sample(NOW, "", "temperature", 1.0),
        Sample(NOW, "cam\x00", "temperature", 1.0),  # PostgreSQL text holds no NUL
        Sample(NOW, "cam-\udcff", "temperature", 1.0),  # no UTF-8 for a lone surrogate
        Sample(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), "cam-01", "t", 1.0),
    ]
    batch = good[:4] + bad[:6] + good[4:] + bad[6:]
    with pytest.raises(RowsRefusedError) as caught:
        TelemetryStore(db).add(batch)
    error = caught.value
    assert error.stored == len(good)
    assert [row for row, _ in error.refused] == bad  # each one, in batch order
    reasons = [why for _, why in error.refused]
    assert "nan is not a finite number" in reasons[0] and "inf" in reasons[1]
    assert "'hot' is not a number" in reasons[3] and "True is not a number" in reasons[4]
    assert "metric must be 1 to 64" in reasons[5] and "source must be 1 to 128" in reasons[6]
    assert "not valid Unicode" in reasons[9] and "out of range in UTC" in reasons[10]
    assert str(error).startswith(f"stored {len(good)} telemetry readings; refused {len(bad)}: ")
    assert isinstance(error, MetadataError) and status_of(error).exit_code == 19
    assert _stored(db) == sorted(("cam-01", "temperature", s.value) for s in good)


def test_rows_the_database_refuses_are_found_by_bisecting_the_batch(db: Database) -> None:
    """A refusal no check here foresees (a constraint the database was given): the batch is
    bisected in transactions rolled back, and only the refused rows are left out."""
    with db.session() as s:
        if db.engine.dialect.name == "sqlite":
            s.execute(
                text(
                    "CREATE TRIGGER over_a_million BEFORE INSERT ON telemetry "
                    "WHEN NEW.value > 1e6 BEGIN SELECT RAISE(ABORT, 'too big'); END"
                )
            )
        else:
            s.execute(text("ALTER TABLE telemetry ADD CONSTRAINT under_a_million "
                           "CHECK (value <= 1e6)"))  # fmt: skip
    batch = _good(64)
    for i in (0, 17, 18, 63):
        batch[i] = Sample(batch[i].at, "cam-01", "temperature", 2e6 + i)
    with pytest.raises(RowsRefusedError) as caught:
        TelemetryStore(db).add(batch)
    assert caught.value.stored == 60
    refused = [cast(Sample, row).value for row, _ in caught.value.refused]
    assert refused == [2e6, 2e6 + 17, 2e6 + 18, 2e6 + 63]
    assert all("the database refuses it" in why for _, why in caught.value.refused)
    assert [v for _, _, v in _stored(db)] == sorted(s.value for s in batch if s.value < 1e6)


def test_a_database_failure_that_is_no_refusal_is_not_bisected(db: Database) -> None:
    with db.session() as s:
        s.execute(text("ALTER TABLE telemetry RENAME TO telemetry_elsewhere"))
    with pytest.raises(MetadataError) as caught:
        TelemetryStore(db).add(_good(8))
    assert not isinstance(caught.value, RowsRefusedError)


def test_non_finite_rows_already_stored_never_reach_a_read(db: Database) -> None:
    """Rows written before readings were checked (or by another writer): NaN where the
    database keeps one (SQLite makes it NULL and refuses it), infinities everywhere."""
    store = TelemetryStore(db)
    store.add(_good(20))
    if db.engine.dialect.name == "sqlite":
        odd = ["9e999", "-9e999"]  # how SQLite spells its infinities
    else:
        odd = ["'Infinity'::float8", "'-Infinity'::float8", "'NaN'::float8"]
    table = TelemetryRow.__table__
    with db.session() as s:
        for value in odd:
            s.execute(table.insert().values(at=NOW, source="cam-01", metric="temperature",
                                            value=literal_column(value)))  # fmt: skip
        assert s.execute(text("SELECT count(*) FROM telemetry")).scalar() == 20 + len(odd)
    read = store.between(**WINDOW)
    assert len(read) == 20 and all(math.isfinite(s.value) for s in read)
    [point] = store.series(**WINDOW, buckets=1)
    assert point.n == 20 and point.high == pytest.approx(21.9)
    assert point.mean == pytest.approx(sum(s.value for s in _good(20)) / 20)


def test_a_reading_that_is_no_number_does_not_blind_the_z_score() -> None:
    steady = [Sample(NOW + timedelta(seconds=i), "cam-01", "pressure", 1013.0 + (i % 3) * 0.1)
              for i in range(20)]  # fmt: skip
    gap = Sample(NOW + timedelta(seconds=20), "cam-01", "pressure", math.nan)
    jump = Sample(NOW + timedelta(seconds=21), "cam-01", "pressure", 1040.0)
    found = telemetry.detect([*steady, gap, jump])
    assert [(a.value, a.reason.split()[0]) for a in found] == [(1040.0, "z-score")]


def test_the_ingestor_drops_malformed_messages_and_keeps_storing(
    broker: None, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Over a real broker: every malformed message is counted and logged on its own, the
    good ones around it are stored, and the next batch is stored too (none is poisoned).
    Other publishers may share the broker: only this test's device is looked at."""
    device = f"cam-{uuid.uuid4().hex[:6]}"
    topic = f"{telemetry.TOPIC}/{device}/temperature"
    at = datetime.now(UTC).isoformat()

    def reading(body: object, where: str = topic) -> tuple[str, bytes]:
        return where, json.dumps(body).encode()

    bad = [
        (topic, b'{"at": "%s", "value": NaN}' % at.encode()),
        (topic, b'{"at": "%s", "value": 1e999}' % at.encode()),  # json reads inf
        reading({"at": at, "value": "21"}),
        reading({"at": at, "value": True}),
        reading({"value": 21.0}),
        reading({"at": "noon", "value": 1}),
        reading([at, 21.0]),
        (topic, b"\xff\xfe not JSON"),
        reading({"at": at, "value": 1}, f"{telemetry.TOPIC}/{device}/{'t' * 65}"),
        reading({"at": at, "value": 1}, f"{telemetry.TOPIC}/{device}{'c' * 120}/temperature"),
    ]
    caplog.set_level(logging.WARNING, logger="kennel.monitor.telemetry")
    ingestor = TelemetryIngestor(db, flush_s=0.2).start()
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{device}")
    publisher.connect("127.0.0.1", 1883)
    publisher.loop_start()

    def send(messages: list[tuple[str, bytes]]) -> None:
        for where, payload in messages:
            publisher.publish(where, payload, qos=1).wait_for_publish(10)

    def ours() -> list[float]:
        return sorted(s.value for s in TelemetryStore(db).between(**WINDOW) if s.source == device)

    def dropped() -> list[str]:
        messages = [r.getMessage() for r in caplog.records]
        return [m for m in messages if "dropped a reading" in m and device in m]

    try:
        first = [reading({"at": at, "value": 20.0 + i}) for i in range(5)]
        send(first[:2] + bad[:5] + first[2:] + bad[5:])
        wait_until(lambda: len(ours()) == 5 and len(dropped()) == len(bad), timeout=20)
        send([reading({"at": at, "value": 30.0 + i}) for i in range(3)])
        wait_until(lambda: len(ours()) == 8, timeout=20)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        ingestor.stop()
    assert ours() == [20.0, 21.0, 22.0, 23.0, 24.0, 30.0, 31.0, 32.0]
    assert len(dropped()) == len(bad) and ingestor.malformed >= len(bad)
    reasons = "\n".join(dropped())
    for said in ("the value nan is not a finite number", "the value inf is not a finite number",
                 "'value' must be a number, not '21'", "'value' must be a number, not True",
                 "'at' must be an ISO 8601 time, not None", "'at' 'noon': not an ISO 8601 time",
                 "not a JSON object", "not JSON", "the metric must be 1 to 64",
                 "the source must be 1 to 128"):  # fmt: skip
        assert said in reasons, said


def test_telemetry_host_stores_the_readings_it_can_and_warns_of_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temperature sensor that reports NaN (a driver's way to say it has no reading)."""
    root = make_project(tmp_path / "p").root
    sensor: Any = type("Reading", (), {"current": math.nan})()
    monkeypatch.setattr(psutil, "sensors_temperatures", lambda: {"acpi": [sensor]}, raising=False)
    result = CliRunner().invoke(app, ["telemetry", "host", "--json", "-C", str(root)])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("warning: not stored: ")
    assert "'host.temperature_max': the value nan is not a finite number" in result.stderr
    shown = {r["metric"] for r in json.loads(result.stdout)}
    assert "host.temperature_max" not in shown and "host.cpu_percent" in shown
    ws = Workspace.load(root)
    try:
        until = datetime.now(UTC) + timedelta(seconds=1)
        stored = {s.metric for s in telemetry.load(ws.db, since=NOW - WINDOW_BACK, until=until)}
    finally:
        ws.close()
    assert stored == shown
