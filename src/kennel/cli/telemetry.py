"""``kennel telemetry``: the host's metrics and the camera's sensors over MQTT, stored and
checked for anomalies."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

import typer

from kennel.cli.app import JsonOption, ProjectOption, new_app, opened, say
from kennel.cli.monitor import Window
from kennel.cli.render import console, emit_json, table
from kennel.errors import RowsRefusedError

telemetry_app = new_app("Host metrics and the camera's sensors over MQTT.")


@telemetry_app.command("simulate")
def telemetry_simulate(
    device: Annotated[
        str, typer.Option(help="Device id, one MQTT topic level: letters, digits, '.', '_', '-'.")
    ] = "cam-01",
    seconds: Annotated[
        float, typer.Option(min=0.1, max=31_536_000, help="How long to publish.")
    ] = 10.0,
    rate: Annotated[
        float, typer.Option(min=0.1, max=10_000, help="Readings per sensor per second.")
    ] = 5.0,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="Inject KIND@SECONDS or KIND@SECONDS+DURATION "
            "(overheat, tamper, condensation, dropout)."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="MQTT broker port.")] = 1883,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Random seed.")] = 0,
    topic: Annotated[
        str, typer.Option(help="Publish on TOPIC/DEVICE/SENSOR (the project's telemetry.topic).")
    ] = "kennel/devices",
) -> None:
    """Publish a realistic stream of the camera's sensors (accelerometer ... temperature)."""
    from kennel.monitor import telemetry

    faults = [telemetry.Fault.parse(f) for f in fault or []]
    sent = telemetry.simulate(
        device,
        seconds=seconds,
        rate_hz=rate,
        faults=faults,
        host=host,
        port=port,
        seed=seed,
        topic=topic,
    )
    console.print(f"published {sent} readings from {device} to {host}:{port}", markup=False)


@telemetry_app.command("ingest")
def telemetry_ingest(
    seconds: Annotated[
        float, typer.Option(min=0, max=31_536_000, help="Stop after N seconds (0 = forever).")
    ] = 0,
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="MQTT broker port.")] = 1883,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Subscribe to every device's sensors under telemetry.topic and store the readings.
    Malformed or implausible readings and lost connections are named on stderr and counted."""
    from kennel.monitor.telemetry_ingest import TelemetryIngestor

    with opened(project) as ws:
        topic = ws.project.config.telemetry.topic
        ingestor = TelemetryIngestor(ws.db, host=host, port=port, topic=topic, warn=_warn)
        ingestor.start()
        if not json_out:
            console.print(f"subscribed to {topic}/+/+ at {host}:{port}", markup=False)
        try:
            if seconds:
                time.sleep(seconds)
            else:
                _forever()
        except KeyboardInterrupt:
            pass
        finally:
            ingestor.stop()
    if json_out:
        emit_json(ingestor.summary())
        return
    summary = f"stored {ingestor.stored} readings ({ingestor.malformed} malformed or implausible)"
    if ingestor.lost:  # QoS 0 readings sent meanwhile are lost: never leave a gap unsaid
        summary += (
            f"; the connection was lost {ingestor.lost} time(s) and made again "
            f"{ingestor.remade} time(s), {ingestor.sessions_lost} without the broker's session"
        )
    console.print(summary, markup=False)


def _warn(message: str) -> None:
    say(message, prefix="warning: ")


def _forever() -> None:
    while True:
        time.sleep(3600)


@telemetry_app.command("host")
def telemetry_host(
    every: Annotated[
        float, typer.Option(min=0.1, max=604_800, help="Seconds between samples.")
    ] = 5.0,
    count: Annotated[int, typer.Option(min=1, max=1_000_000, help="Samples to take.")] = 1,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Sample this machine with psutil (CPU, memory, disk, temperatures, RSS) into the store.
    A reading that cannot be stored (a sensor reporting NaN) is left out with a warning."""
    from kennel.monitor import telemetry

    taken = []
    with opened(project) as ws:
        for i in range(count):
            samples = telemetry.host_samples()
            try:
                telemetry.store(ws.db, samples)
            except RowsRefusedError as exc:
                for _, why in exc.refused:
                    say(f"not stored: {why}", prefix="warning: ")
                left_out = {id(sample) for sample, _ in exc.refused}
                samples = [x for x in samples if id(x) not in left_out]
            taken += samples
            if i + 1 < count:
                time.sleep(every)
    rows = [{"metric": s.metric, "value": round(s.value, 2), "source": s.source} for s in taken]
    if json_out:
        emit_json(rows)
    else:
        table("host telemetry", ["source", "metric", "value"],
              [[r["source"], r["metric"], r["value"]] for r in rows])  # fmt: skip


@telemetry_app.command("anomalies")
def telemetry_anomalies(
    window: Window = "1h",
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Readings out of range or far from their recent history."""
    from kennel.monitor import telemetry
    from kennel.monitor.runner import parse_span

    until = datetime.now(UTC)
    with opened(project) as ws:
        found = telemetry.anomalies(ws.db, since=until - parse_span(window), until=until)
    if json_out:
        emit_json([a.as_dict() for a in found])
        return
    table(
        "telemetry anomalies",
        ["at", "source", "metric", "value", "why"],
        [[f"{a.at:%H:%M:%S}", a.source, a.metric, f"{a.value:.6g}", a.reason] for a in found],
    )
