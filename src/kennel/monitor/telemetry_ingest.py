"""Device telemetry in: a subscriber to TOPIC/DEVICE/SENSOR on an MQTT broker that stores every
reading it can (the simulator and the anomaly checks are in ``kennel.monitor.telemetry``).

A reading is dropped, logged and counted as malformed when it cannot be read (not JSON, no
time, a value that is not a finite number), when the store refuses it, and when it is not
plausible: a device or sensor name other than one topic level of letters, digits, '.', '_' and
'-' (what the simulator allows), or a time before 2000-01-01 or more than five minutes ahead
of this machine's clock (a device whose clock was reset, a typo'd year). The rest of its batch
is stored.

Delivery: the subscription is QoS 1 in an MQTT 5 session the broker keeps for an hour while
the connection is down, so readings published with QoS 1 or 2 while it is down are delivered
once it is made again. Readings published with QoS 0 then, and all of them when the broker
kept no session (restarted without persistence) or more than it queues per client, are lost:
each lost and each re-made connection is logged and counted, so a gap is never silent.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from kennel.config.monitoring import topic_problem
from kennel.db import Database, aware
from kennel.db.telemetry import Sample, problem, short
from kennel.errors import ConfigError, RowsRefusedError, ServiceError
from kennel.monitor.telemetry import NAME, TOPIC, store

log = logging.getLogger(__name__)

# A reading's time must lie in [EARLIEST, now + AHEAD]: no camera of this system predates 2000,
# and five minutes covers a device clock that NTP has not yet corrected.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
AHEAD = timedelta(minutes=5)
# how long the broker keeps the subscription and queues QoS 1 readings while we are away
SESSION_EXPIRY_S = 3600


def parse(
    topic: str, payload: bytes | bytearray, *, prefix: str = TOPIC, now: datetime | None = None
) -> Sample:
    """One reading from ``PREFIX/DEVICE/SENSOR`` and its JSON ``{"at": ISO time, "value":
    number}``; ValueError says what is wrong with it or why it is not plausible."""
    levels = topic[len(prefix) + 1 :].split("/") if topic.startswith(f"{prefix}/") else []
    if len(levels) != 2:
        raise ValueError(f"the topic is not {prefix}/DEVICE/SENSOR")
    device, sensor = levels
    for what, name in (("device", device), ("sensor", sensor)):
        if not NAME.fullmatch(name):
            raise ValueError(f"the {what} {short(name)} is not letters, digits, '.', '_' or '-'")
    try:
        body = json.loads(payload)
    except ValueError as exc:  # UnicodeDecodeError too
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    at, value = body.get("at"), body.get("value")
    if not isinstance(at, str):
        raise ValueError(f"'at' must be an ISO 8601 time, not {short(at)}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"'value' must be a number, not {short(value)}")
    try:
        when = aware(datetime.fromisoformat(at))
    except ValueError:
        raise ValueError(f"'at' {short(at)}: not an ISO 8601 time") from None
    try:
        sample = Sample(when, device, sensor, float(value))
    except OverflowError:  # an integer with hundreds of digits
        raise ValueError("'value' is too large for a reading") from None
    why = problem(sample)  # also: a time that is out of range in UTC, so astimezone works
    if why is not None:
        raise ValueError(why)
    clock = now or datetime.now(UTC)
    if not EARLIEST <= when.astimezone(UTC) <= clock + AHEAD:
        raise ValueError(
            f"'at' {short(at)}: not a plausible time (before {EARLIEST:%Y-%m-%d} or more than "
            f"{AHEAD.seconds // 60} minutes ahead of this clock's {clock:%Y-%m-%dT%H:%M:%S%z})"
        )
    return sample


def _expiry(packet: int, seconds: int) -> Properties:
    props = Properties(packet)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = seconds
    return props


class TelemetryIngestor:
    """Subscribes to every device's sensors under ``topic`` and writes readings to the store in
    batches; ``lost``, ``remade`` and ``sessions_lost`` count the connection's outages."""

    def __init__(
        self,
        db: Database,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        flush_s: float = 0.5,
        topic: str = TOPIC,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if (why := topic_problem(topic)) is not None:
            raise ConfigError(f"telemetry.{why}")
        self.db = db
        self.host = host
        self.port = port
        self.flush_s = flush_s
        self.topic = topic
        # who is told of each dropped reading and each lost or re-made connection (the CLI
        # prints them on stderr as they happen); None: they are logged as warnings
        self._warn = warn or partial(log.warning, "%s")
        self.received = 0
        self.stored = 0
        self.malformed = 0
        self.lost = 0  # connections lost while running
        self.remade = 0  # ... and made again
        self.sessions_lost = 0  # made again without the broker's session: readings lost
        self._connected = False
        self._ever_connected = False
        self._queue: queue.Queue[Sample] = queue.Queue()
        self._subscribed = threading.Event()
        self._closing = threading.Event()
        self._stop = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"kennel-ingest-{os.getpid()}-{id(self)}",
            protocol=mqtt.MQTTv5,  # a session that outlives a lost connection, and no longer
        )
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._writer = threading.Thread(
            target=self._write_loop, name="kennel-telemetry", daemon=True
        )

    def summary(self) -> dict[str, object]:
        return {"topic": f"{self.topic}/+/+", "received": self.received, "stored": self.stored,
                "malformed": self.malformed, "connections_lost": self.lost,
                "connections_remade": self.remade, "sessions_lost": self.sessions_lost}  # fmt: skip

    def _on_connect(
        self,
        client: mqtt.Client,
        _u: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        *_: object,
    ) -> None:
        if reason.is_failure:
            return  # paho tries again; start() says so if it never succeeds
        where = f"{self.host}:{self.port}"
        if self._ever_connected:
            self.remade += 1
            if flags.session_present:
                self._warn(f"telemetry: connected to {where} again; readings sent with QoS 1 "
                           "or 2 meanwhile are delivered now")  # fmt: skip
            else:
                self.sessions_lost += 1
                self._warn(f"telemetry: connected to {where} again, but the broker kept no "
                           "session: readings sent while disconnected are lost")  # fmt: skip
        self._connected = self._ever_connected = True
        client.subscribe(f"{self.topic}/+/+", qos=1)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        was, self._connected = self._connected, False
        if was and not self._closing.is_set():  # not a failed attempt, nor our own goodbye
            self.lost += 1
            self._warn(f"telemetry: lost the connection to {self.host}:{self.port} ({reason}); "
                       "reconnecting")  # fmt: skip

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        try:
            self._queue.put(parse(msg.topic, msg.payload, prefix=self.topic))
        except ValueError as exc:
            self._drop(f"{msg.topic}: {exc}")

    def _drop(self, why: str) -> None:
        self.malformed += 1
        self._warn(f"telemetry: dropped a reading: {why}")

    def start(self, timeout: float = 10.0) -> TelemetryIngestor:
        where = f"{self.host}:{self.port}"
        session = _expiry(PacketTypes.CONNECT, SESSION_EXPIRY_S)
        try:
            self._client.connect(self.host, self.port, keepalive=30, properties=session)
        except OSError as exc:
            raise ServiceError(f"MQTT broker unreachable at {where}: {exc}") from exc
        self._client.loop_start()
        self._writer.start()
        if not self._subscribed.wait(timeout):
            raise ServiceError(f"no subscription acknowledged by {where}")
        return self

    def stop(self) -> None:
        self._closing.set()
        # the session is for outages within a run: it ends with it rather than queue for an hour
        self._client.disconnect(properties=_expiry(PacketTypes.DISCONNECT, 0))
        self._client.loop_stop()
        self._stop.set()
        self._writer.join(10)
        self._flush()

    def _flush(self) -> None:
        batch: list[Sample] = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if batch:
            try:
                self.stored += store(self.db, batch)
            except RowsRefusedError as exc:  # the others are stored; never try these again
                self.stored += exc.stored
                for _, why in exc.refused:
                    self._drop(why)
            except Exception:
                for sample in batch:  # keep them for the next attempt
                    self._queue.put(sample)
                raise

    def _write_loop(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self._flush()
            except Exception:  # a database hiccup must not kill the subscriber
                log.exception("telemetry: could not store a batch")
