"""Device telemetry over a real MQTT broker: the simulator's readings arrive in the store, and
an injected fault becomes an alert."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db.schema import TelemetryRow
from kennel.govern.cycle import monitor_once
from kennel.monitor import telemetry
from kennel.monitor.telemetry_ingest import TelemetryIngestor
from kennel.wiring import Workspace
from tests.serving import wait_until

runner = CliRunner()


def test_simulated_device_stream_is_stored_and_a_fault_raises_an_alert(
    broker: None, tmp_path: Path
) -> None:
    root = tmp_path / "p"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    ws = Workspace.load(root)
    device = f"cam-{uuid.uuid4().hex[:6]}"
    ingestor = TelemetryIngestor(ws.db).start()

    def stored() -> int:
        with ws.db.session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(TelemetryRow)
                    .where(TelemetryRow.source == device)
                )
                or 0
            )

    try:
        sim = runner.invoke(
            app,
            ["telemetry", "simulate", "--device", device, "--seconds", "3", "--rate", "10",
             "--fault", "overheat@2+0.5"],
        )  # fmt: skip
        assert sim.exit_code == 0, sim.output
        sent = 3 * 10 * len(telemetry.SENSORS)
        assert f"published {sent} readings" in sim.output
        wait_until(lambda: stored() >= sent, timeout=20)
    finally:
        ingestor.stop()
    assert ingestor.malformed == 0
    until = datetime.now(UTC) + timedelta(seconds=1)
    found = telemetry.anomalies(ws.db, since=until - timedelta(minutes=5), until=until)
    ours = [a for a in found if a.source == device]
    assert ours and {a.metric for a in ours} == {"temperature"}
    assert len(ours) == 5  # 0.5 s at 10 Hz of overheating, nothing else
    cycle = monitor_once(ws.monitor(), ws.actions(), span=timedelta(minutes=5))
    assert cycle.result.metrics["telemetry.anomalies"] >= 5
    assert "device-anomaly" in [a.rule for a in cycle.alerts.opened]
    ws.close()
    # the CLI: the same incident again (deduplicated), then acknowledged by a person
    report = tmp_path / "monitor.html"
    again = runner.invoke(app, ["monitor", "run", "--window", "5m", "--report", str(report),
                                "--json", "-C", str(root)])  # fmt: skip
    assert again.exit_code == 0, again.output
    ongoing = json.loads(again.stdout)["alerts"]["ongoing"]
    assert [a["rule"] for a in ongoing] == ["device-anomaly"] and ongoing[0]["count"] == 2
    assert "Monitoring production" in report.read_text()
    alert_id = str(ongoing[0]["id"])
    refused = runner.invoke(app, ["alerts", "ack", alert_id, "-C", str(root)])
    assert refused.exit_code == 14  # changing an alert takes a token with a role
    ops = json.loads(
        runner.invoke(
            app, ["token", "create", "--role", "operator", "--name", "ops-olga", "--json",
                  "-C", str(root)],
        ).stdout
    )["token"]  # fmt: skip
    acked = runner.invoke(app, ["alerts", "ack", alert_id, "--token", ops, "-C", str(root)])
    assert acked.exit_code == 0, acked.output
    again = runner.invoke(app, ["alerts", "ack", alert_id, "--token", ops, "-C", str(root)])
    assert again.exit_code == 17 and "already acknowledged" in again.stderr
    listed = json.loads(runner.invoke(app, ["alerts", "list", "--json", "-C", str(root)]).output)
    assert listed[0]["state"] == "acknowledged" and listed[0]["actions"]["log"].startswith("logged")
    # continuous monitoring: two cycles; the acknowledged incident goes on, nothing reopens
    watched = runner.invoke(app, ["monitor", "watch", "--window", "5m", "--every", "1",
                                  "--count", "2", "-C", str(root)])  # fmt: skip
    assert watched.exit_code == 0, watched.output
    assert watched.output.count("production: no predictions from") == 2  # two cycles shown
    assert "alert device-anomaly" not in watched.output
    listed = json.loads(runner.invoke(app, ["alerts", "list", "--json", "-C", str(root)]).output)
    assert listed[0]["state"] == "acknowledged" and listed[0]["count"] == 4


def test_anomaly_detection_by_range_and_z_score() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    series = [
        telemetry.Sample(t0 + timedelta(seconds=i), "cam", "gyroscope", 0.1 * (-1) ** i)
        for i in range(40)
    ]
    series.append(telemetry.Sample(t0 + timedelta(seconds=41), "cam", "gyroscope", 5.0))  # knock
    series.append(telemetry.Sample(t0 + timedelta(seconds=42), "cam", "humidity", 99.0))
    found = telemetry.detect(series)
    assert [(a.metric, a.reason.split()[0]) for a in found] == [
        ("gyroscope", "z-score"),
        ("humidity", "outside"),
    ]
