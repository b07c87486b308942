"""The telemetry subscriber: implausible readings are refused and counted, the project's topic
prefix is the only one read, and a connection lost mid-run is said and costs no QoS 1 reading
(the broker keeps the session). Over the real Mosquitto; a TCP relay cuts the connection."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db import Database
from kennel.db.telemetry import Sample, TelemetryStore
from kennel.monitor import telemetry
from kennel.monitor.telemetry_ingest import TelemetryIngestor, parse
from kennel.wiring import Workspace
from tests.conftest import make_project
from tests.serving import wait_until

runner = CliRunner()
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _body(at: datetime | str, value: float = 21.0) -> bytes:
    return json.dumps(
        {"at": at if isinstance(at, str) else at.isoformat(), "value": value}
    ).encode()


# -- what a reading must be ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("topic", "at", "said"),
    [
        ("kennel/devices/cam-01/temperature", "9999-12-31T23:59:59+00:00", "not a plausible time"),
        ("kennel/devices/cam-01/temperature", "0001-01-01T00:00:00+00:00", "not a plausible time"),
        ("kennel/devices/cam-01/temperature", "1970-01-01T00:00:00Z", "before 2000-01-01"),
        ("kennel/devices/cam-01/temperature", NOW + timedelta(minutes=6), "5 minutes ahead"),
        ("kennel/devices/ /temperature", NOW, "the device ' ' is not letters"),
        ("kennel/devices/cam-01/a b", NOW, "the sensor 'a b' is not letters"),
        ("kennel/devices//temperature", NOW, "the device '' is not letters"),
        ("kennel/devices/cam+01/temperature", NOW, "the device 'cam+01'"),
        ("kennel/devicesX/cam-01/temperature", NOW, "the topic is not kennel/devices/DEVICE/"),
    ],
)
def test_an_implausible_reading_is_refused_with_its_reason(
    topic: str, at: datetime | str, said: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(said)):
        parse(topic, _body(at), now=NOW)


def test_plausible_readings_at_the_edges_are_read() -> None:
    for at in (NOW + timedelta(minutes=4), datetime(2000, 1, 1, tzinfo=UTC), NOW):
        sample = parse("kennel/devices/cam.01_b/humidity", _body(at), now=NOW)
        assert sample == Sample(at, "cam.01_b", "humidity", 21.0)
    sample = parse("park-a/north/devices/cam-01/x", _body(NOW), prefix="park-a/north/devices")
    assert (sample.source, sample.metric) == ("cam-01", "x")


# -- over the broker ----------------------------------------------------------------------------
@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(f"sqlite:///{tmp_path}/t.db")
    yield database
    database.dispose()


@pytest.fixture
def publisher(broker: None) -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"wtb-test-{uuid.uuid4().hex}")
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    yield client
    client.loop_stop()
    client.disconnect()


def _send(client: mqtt.Client, topic: str, value: float, at: datetime | None = None) -> None:
    client.publish(topic, _body(at or datetime.now(UTC), value), qos=1).wait_for_publish(10)


def _values(db: Database, device: str) -> list[float]:
    now = datetime.now(UTC)
    found = TelemetryStore(db).between(since=now - timedelta(hours=1), until=now + timedelta(1))
    return sorted(s.value for s in found if s.source == device)


def test_only_the_projects_topic_is_read_and_implausible_readings_are_counted(
    db: Database, publisher: mqtt.Client, caplog: pytest.LogCaptureFixture
) -> None:
    prefix, device = f"wtb-{uuid.uuid4().hex[:8]}/devices", "cam-01"
    caplog.set_level(logging.WARNING, logger="kennel.monitor.telemetry_ingest")
    ingestor = TelemetryIngestor(db, topic=prefix, flush_s=0.1).start()
    try:
        _send(publisher, f"{telemetry.TOPIC}/{device}/temperature", 1.0)  # another project's
        _send(publisher, f"{prefix}/{device}/temperature", 2.0)
        _send(publisher, f"{prefix}/{device}/temperature", 3.0, datetime(9999, 12, 31, tzinfo=UTC))
        _send(publisher, f"{prefix}/{device}/a b", 4.0)
        wait_until(lambda: ingestor.received == 3 and _values(db, device) == [2.0], timeout=20)
    finally:
        ingestor.stop()
    assert ingestor.malformed == 2 and ingestor.stored == 1
    dropped = [r.getMessage() for r in caplog.records if "dropped a reading" in r.getMessage()]
    assert len(dropped) == 2 and "not a plausible time" in dropped[0] and "'a b'" in dropped[1]


def test_simulate_publishes_under_the_topic_it_is_given(db: Database, broker: None) -> None:
    prefix, device = f"wtb-{uuid.uuid4().hex[:8]}/devices", f"cam-{uuid.uuid4().hex[:6]}"
    ingestor = TelemetryIngestor(db, topic=prefix, flush_s=0.1).start()
    try:
        sim = runner.invoke(app, ["telemetry", "simulate", "--device", device, "--seconds", "0.2",
                                  "--rate", "10", "--topic", prefix])  # fmt: skip
        assert sim.exit_code == 0, sim.output
        wait_until(lambda: len(_values(db, device)) == 2 * len(telemetry.SENSORS), timeout=20)
    finally:
        ingestor.stop()
    bad = runner.invoke(app, ["telemetry", "simulate", "--topic", "a/#"])
    assert bad.exit_code != 0 and "topic 'a/#': use 1 to 8 levels" in bad.stderr


class _Relay:
    """A TCP relay to the broker whose connections can be cut, and new ones refused, for a
    while: an outage of one client's connection while the broker stays up."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.accepted = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self._server.accept()
            except OSError:
                return
            if not self.up.is_set():
                near.close()
                continue
            far = socket.create_connection(("127.0.0.1", 1883))
            self._open += [near, far]
            self.accepted += 1
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            source.close()
            sink.close()

    def cut(self) -> None:
        self.up.clear()
        for s in self._open:
            with contextlib.suppress(OSError):  # already closed by its pump
                s.shutdown(socket.SHUT_RDWR)  # wakes the pumps; close() alone would not
        self._open.clear()

    def close(self) -> None:
        self.cut()
        self._server.close()


@pytest.fixture
def relay(broker: None) -> Iterator[_Relay]:
    r = _Relay()
    yield r
    r.close()


def test_a_reading_sent_while_the_connection_is_down_arrives_and_the_outage_is_said(
    db: Database, publisher: mqtt.Client, relay: _Relay, caplog: pytest.LogCaptureFixture
) -> None:
    prefix, device = f"wtb-{uuid.uuid4().hex[:8]}/devices", "cam-01"
    topic = f"{prefix}/{device}/temperature"
    caplog.set_level(logging.WARNING, logger="kennel.monitor.telemetry_ingest")
    ingestor = TelemetryIngestor(db, port=relay.port, topic=prefix, flush_s=0.1).start()
    try:
        _send(publisher, topic, 1.0)
        wait_until(lambda: _values(db, device) == [1.0])
        relay.cut()
        wait_until(lambda: ingestor.lost == 1)
        _send(publisher, topic, 2.0)  # the broker queues it in the ingestor's session
        time.sleep(0.3)
        relay.up.set()
        wait_until(lambda: ingestor.remade == 1 and _values(db, device) == [1.0, 2.0], 30)
        _send(publisher, topic, 3.0)
        wait_until(lambda: _values(db, device) == [1.0, 2.0, 3.0])
    finally:
        ingestor.stop()
    assert (ingestor.lost, ingestor.remade, ingestor.sessions_lost) == (1, 1, 0)
    said = [r.getMessage() for r in caplog.records]
    assert any(f"lost the connection to 127.0.0.1:{relay.port}" in m for m in said)
    assert any("again; readings sent with QoS 1 or 2 meanwhile are delivered now" in m
               for m in said)  # fmt: skip


def test_ingest_says_each_lost_connection_on_stderr_and_in_its_summary(
    tmp_path: Path, relay: _Relay
) -> None:
    root = make_project(tmp_path / "p", sections={"telemetry": {"topic": "wtb-cli/devices"}}).root

    def outage() -> None:
        wait_until(lambda: relay.accepted == 1)
        time.sleep(0.5)
        relay.cut()
        time.sleep(0.3)
        relay.up.set()

    threading.Thread(target=outage, daemon=True).start()
    result = runner.invoke(app, ["telemetry", "ingest", "--seconds", "6", "--port",
                                 str(relay.port), "-C", str(root)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"subscribed to wtb-cli/devices/+/+ at 127.0.0.1:{relay.port}" in result.stdout
    assert f"lost the connection to 127.0.0.1:{relay.port}" in result.stderr
    assert result.stdout.rstrip().endswith(
        "stored 0 readings (0 malformed or implausible); the connection was lost 1 time(s) "
        "and made again 1 time(s), 0 without the broker's session"
    )


def test_ingest_reads_the_configured_topic_and_reports_in_json(
    tmp_path: Path, broker: None
) -> None:
    root = make_project(tmp_path / "p", sections={"telemetry": {"topic": "wtb-json/devices"}}).root
    result = runner.invoke(app, ["telemetry", "ingest", "--seconds", "0.2", "--json",
                                 "-C", str(root)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "topic": "wtb-json/devices/+/+", "received": 0, "stored": 0, "malformed": 0,
        "connections_lost": 0, "connections_remade": 0, "sessions_lost": 0,
    }  # fmt: skip


# -- how readings are shown ---------------------------------------------------------------------
def test_huge_readings_are_shown_compactly(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p").root
    ws = Workspace.load(root)
    now = datetime.now(UTC)
    try:
        TelemetryStore(ws.db).add([Sample(now, "cam-01", "temperature", 1e308)])
    finally:
        ws.close()
    result = runner.invoke(app, ["telemetry", "anomalies", "-C", str(root)],
                           env={"COLUMNS": "400"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1e+308" in result.stdout and not re.search(r"\d{20}", result.stdout)
    steady = [Sample(now + timedelta(seconds=i), "cam", "x", 1.0 + i % 2) for i in range(12)]
    [jump] = telemetry.detect([*steady, Sample(now + timedelta(seconds=13), "cam", "x", 1e300)])
    assert jump.reason == "z-score 2e+300 > 6.0"
