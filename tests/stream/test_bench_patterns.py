"""``kennel bench patterns`` runs all four deployment patterns on one bundle in one go."""

from __future__ import annotations

import json
from pathlib import Path

import pika
import pytest
import redis
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.stream.rpc import DEFAULT_URL
from kennel.wiring import Workspace
from tests.conftest import unavailable
from tests.serving import served_project


@pytest.fixture
def brokers() -> None:
    try:
        pika.BlockingConnection(pika.URLParameters(DEFAULT_URL)).close()
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=2).ping()
    except (pika.exceptions.AMQPError, redis.RedisError) as exc:
        unavailable(f"RabbitMQ or Redis unreachable: {exc.__class__.__name__}")


def test_bench_patterns_measures_all_four(brokers: None, tmp_path: Path) -> None:
    project = served_project(tmp_path, models=1)
    ws = Workspace(project)
    try:
        ws.registry.set_alias("pets", "production", 1, actor="test", reason="bench")
    finally:
        ws.close()
    result = CliRunner().invoke(
        app, ["bench", "patterns", "--images", "12", "--json", "-C", str(project.root)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # progress events are JSON lines on stderr
    assert report["images"] == 12
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert next(e["message"] for e in events if e["phase"] == "patterns").startswith("pattern 1")
    rows = report["results"]
    assert [r["pattern"] for r in rows] == [
        "1 embedded",
        "2 dedicated API",
        "2 dedicated API",
        "3 model as data",
        "4 offline batch",
    ]
    for row in rows:
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["images_per_second"] > 0
    assert "loaded in" in rows[3]["note"]
