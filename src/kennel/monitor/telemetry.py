"""Host and device telemetry: psutil samples of this machine, and the camera's own sensors
(accelerometer, gyroscope, humidity, magnetometer, pressure, temperature) over MQTT.

Readings are flagged as anomalies by a fixed range per metric and by a rolling z-score against
the same sensor's recent history (a knocked camera, a heater gone wrong, condensation).

The simulator is here; the subscriber that stores what devices publish is in
``kennel.monitor.telemetry_ingest``.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psutil
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kennel.config.monitoring import topic_problem
from kennel.db import Database
from kennel.db.telemetry import MAX_SOURCE, TelemetryStore
from kennel.db.telemetry import Sample as Sample  # defined with its store; re-exported
from kennel.errors import ConfigError, ServiceError

TOPIC = "kennel/devices"
SENSORS = ("accelerometer", "gyroscope", "humidity", "magnetometer", "pressure", "temperature")
# Plausible ranges for a park camera; outside them a reading is an anomaly whatever its history.
LIMITS: dict[str, tuple[float, float]] = {
    "accelerometer": (9.3, 10.3),  # m/s², magnitude: ~g when the camera is still
    "gyroscope": (-15.0, 15.0),  # deg/s
    "humidity": (5.0, 95.0),  # %RH; sustained 95+ means condensation on the lens
    "magnetometer": (25.0, 70.0),  # µT
    "pressure": (950.0, 1060.0),  # hPa
    "temperature": (-25.0, 60.0),  # °C inside the housing
    "host.cpu_percent": (0.0, 99.0),
    "host.memory_percent": (0.0, 95.0),
    "host.disk_percent": (0.0, 95.0),
}
FAULTS = ("overheat", "tamper", "condensation", "dropout")
# what may name a device or a sensor: one MQTT topic level that the ingestor reads back as the
# same name, with no "/", no wildcard, no space (the ingestor refuses any other)
NAME = re.compile(r"[\w.-]+")
DEVICE = re.compile(rf"[\w.-]{{1,{MAX_SOURCE}}}")


def check_device(device: str) -> str:
    """``device`` if it can name a device's topic and its stored readings; else ConfigError."""
    if not DEVICE.fullmatch(device):
        shown = device if len(device) <= 80 else f"{device[:60]}... ({len(device)} characters)"
        raise ConfigError(
            f"device id {shown!r}: use 1 to {MAX_SOURCE} letters, digits, '.', '_' or '-' "
            f"(it is a level of the topic {TOPIC}/DEVICE/SENSOR)"
        )
    return device


@dataclass(frozen=True)
class Anomaly:
    at: datetime
    source: str
    metric: str
    value: float
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "at": self.at.isoformat()}


# -- host ---------------------------------------------------------------------------------------
def host_samples(source: str | None = None) -> list[Sample]:
    """One psutil reading of this machine and this process."""
    now = datetime.now(UTC)
    name = source or socket.gethostname()
    values = {
        "host.cpu_percent": psutil.cpu_percent(interval=0.1),
        "host.memory_percent": psutil.virtual_memory().percent,
        "host.disk_percent": psutil.disk_usage("/").percent,
        "host.process_rss_mb": psutil.Process(os.getpid()).memory_info().rss / 2**20,
        "host.load_1m": os.getloadavg()[0],
    }
    temps: dict[str, Any] = getattr(psutil, "sensors_temperatures", dict)() or {}
    readings = [t.current for group in temps.values() for t in group if t.current is not None]
    if readings:
        values["host.temperature_max"] = max(readings)
    return [Sample(now, name, k, float(v)) for k, v in values.items()]


def store(db: Database, samples: Iterable[Sample]) -> int:
    return TelemetryStore(db).add(samples)


# -- anomalies ----------------------------------------------------------------------------------
def detect(samples: Sequence[Sample], *, z: float = 6.0, history: int = 30) -> list[Anomaly]:
    """Range breaches, and jumps of more than ``z`` standard deviations from the same series'
    previous ``history`` readings (needs at least 10 of them)."""
    out: list[Anomaly] = []
    recent: dict[tuple[str, str], deque[float]] = defaultdict(lambda: deque(maxlen=history))
    for s in sorted(samples, key=lambda x: x.at):
        if not math.isfinite(s.value):  # no reading: it must not blind the z-score either
            continue
        lo, hi = LIMITS.get(s.metric, (-math.inf, math.inf))
        past = recent[(s.source, s.metric)]
        if not lo <= s.value <= hi:
            out.append(Anomaly(s.at, s.source, s.metric, s.value, f"outside [{lo}, {hi}]"))
        elif len(past) >= 10:
            mean, std = float(np.mean(past)), float(np.std(past))
            score = abs(s.value - mean) / max(std, 1e-6, abs(mean) * 1e-3)
            if score > z:
                why = f"z-score {score:.3g} > {z}"  # .3g: a 1e308 reading's score is short too
                out.append(Anomaly(s.at, s.source, s.metric, s.value, why))
        past.append(s.value)
    return out


def load(db: Database, *, since: datetime, until: datetime) -> list[Sample]:
    return TelemetryStore(db).between(since=since, until=until)


def anomalies(db: Database, *, since: datetime, until: datetime) -> list[Anomaly]:
    return detect(load(db, since=since, until=until))


# -- MQTT ---------------------------------------------------------------------------------------
def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)


def _connect(client: mqtt.Client, host: str, port: int) -> None:
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise ServiceError(f"MQTT broker unreachable at {host}:{port}: {exc}") from exc


def reading(sensor: str, t: float, rng: np.random.Generator, fault: str | None) -> float:
    """A realistic reading of ``sensor`` ``t`` seconds into a run, with an optional fault."""
    day = math.sin(2 * math.pi * t / 600)  # a compressed day: 10 minutes
    value = {
        "accelerometer": 9.81 + rng.normal(0, 0.03),
        "gyroscope": rng.normal(0, 0.4),
        "humidity": 55 + 10 * day + rng.normal(0, 0.8),
        "magnetometer": 48 + rng.normal(0, 0.4),
        "pressure": 1013 + 1.5 * day + rng.normal(0, 0.2),
        "temperature": 21 + 4 * day + rng.normal(0, 0.15),
    }[sensor]
    if fault == "overheat" and sensor == "temperature":
        value += 50
    elif fault == "tamper" and sensor in ("accelerometer", "gyroscope"):
        value += 6.0 if sensor == "accelerometer" else 90.0
    elif fault == "condensation" and sensor == "humidity":
        value = 99.0
    return float(value)


@dataclass(frozen=True)
class Fault:
    kind: str
    at_s: float
    for_s: float = 3.0

    @classmethod
    def parse(cls, text: str) -> Fault:
        """'overheat@5' or 'tamper@2+4' (kind @ start seconds [+ duration])."""
        kind, _, when = text.partition("@")
        if kind not in FAULTS or not when:
            raise ConfigError(f"--fault {text!r}: expected KIND@SECONDS with KIND in {FAULTS}")
        start, plus, length = when.partition("+")
        if not when.isascii():  # float() also reads other scripts' digits ("٣" is 3)
            start = "nan"
        try:
            at_s, for_s = float(start), float(length) if plus else 3.0
        except ValueError:
            at_s = for_s = math.nan
        if not (math.isfinite(at_s) and math.isfinite(for_s)):
            raise ConfigError(
                f"--fault {text!r}: expected KIND@SECONDS or KIND@SECONDS+DURATION in seconds"
            )
        if at_s < 0 or for_s <= 0:
            raise ConfigError(
                f"--fault {text!r}: it must start at 0 s or later and last more than 0 s"
            )
        return cls(kind, at_s, for_s)


def simulate(
    device: str,
    *,
    seconds: float,
    rate_hz: float = 5.0,
    faults: Sequence[Fault] = (),
    host: str = "127.0.0.1",
    port: int = 1883,
    seed: int = 0,
    realtime: bool = True,
    topic: str = TOPIC,
) -> int:
    """Publish the device's sensor stream on ``topic``/DEVICE/SENSOR; returns the number of
    messages sent. A device id that cannot be a topic level, a topic that cannot prefix one,
    or a fault that starts after the run, is refused first."""
    check_device(device)
    if (why := topic_problem(topic)) is not None:
        raise ConfigError(f"--{why}")
    for f in faults:
        if f.at_s >= seconds:
            raise ConfigError(
                f"--fault {f.kind}@{f.at_s:g}: starts after the run ends ({seconds:g} s)"
            )
    rng = np.random.default_rng(seed)
    client = _client(f"kennel-sim-{device}-{os.getpid()}")
    _connect(client, host, port)
    client.loop_start()
    sent, began, ticks = 0, time.monotonic(), int(seconds * rate_hz)
    try:
        for k in range(ticks):
            t = k / rate_hz
            active = next((f.kind for f in faults if f.at_s <= t < f.at_s + f.for_s), None)
            if active == "dropout":
                continue
            at = datetime.now(UTC).isoformat()
            for sensor in SENSORS:
                payload = json.dumps({"at": at, "value": reading(sensor, t, rng, active)})
                info = client.publish(f"{topic}/{device}/{sensor}", payload, qos=1)
                info.wait_for_publish(10)
                sent += 1
            if realtime:
                delay = began + (k + 1) / rate_hz - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    finally:
        client.loop_stop()
        client.disconnect()
    return sent
