"""MQTT telemetry ingestion: messages per second from the broker into the metadata store
(Mosquitto at 127.0.0.1:1883 with its default limits, QoS 1, SQLite), publisher and
subscriber on this machine. The publisher sends bursts of 500 and waits for the subscriber to
receive them, so the figure is the sustained rate without loss (Mosquitto drops QoS 1
messages beyond 1,000 queued for a subscriber that lags).

    .venv/bin/python benchmarks/telemetry_mqtt.py [--messages 20000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kennel.config import init_project
from kennel.monitor.telemetry import TOPIC
from kennel.monitor.telemetry_ingest import TelemetryIngestor
from kennel.wiring import Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project, _ = init_project(Path(tmp) / "p")
        ws = Workspace(project)
        ingestor = TelemetryIngestor(ws.db, flush_s=0.2).start()
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex}")
        publisher.max_inflight_messages_set(1000)
        publisher.connect("127.0.0.1", 1883)
        publisher.loop_start()
        device = f"bench-{uuid.uuid4().hex[:6]}"
        began = time.perf_counter()
        for lo in range(0, args.messages, 500):
            infos = []
            for k in range(lo, min(lo + 500, args.messages)):
                body = json.dumps({"at": datetime.now(UTC).isoformat(), "value": 20 + k % 7})
                infos.append(publisher.publish(f"{TOPIC}/{device}/temperature", body, qos=1))
            for info in infos:
                info.wait_for_publish(60)
            deadline = time.perf_counter() + 60
            while ingestor.received < len(infos) + lo and time.perf_counter() < deadline:
                time.sleep(0.002)
        published = time.perf_counter() - began
        while ingestor.stored < args.messages and time.perf_counter() - began < 300:
            time.sleep(0.05)
        stored = time.perf_counter() - began
        publisher.loop_stop()
        publisher.disconnect()
        ingestor.stop()
        ws.close()
    print(json.dumps({
        "messages": args.messages,
        "stored": ingestor.stored,
        "received_s": round(published, 2),
        "end_to_end_s": round(stored, 2),
        "messages_per_second": round(ingestor.stored / stored, 1),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
