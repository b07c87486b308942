"""A monitoring window that spans a release is labelled with every version it holds, in the
result, the stored run, the compliance query and ``kennel monitor run`` (text and JSON)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.db.monitoring import MonitorRunStore
from kennel.db.predictions import LoggedPrediction, PredictionStore
from kennel.wiring import Workspace

runner = CliRunner()


def _served(i: int, version: int, at: datetime) -> LoggedPrediction:
    cat = 0.8 if i % 2 else 0.3
    return LoggedPrediction(
        id=f"w{i:04d}",
        at=at,
        environment="production",
        model="pets",
        version=version,
        label="cat" if cat > 0.5 else "dog",
        confidence=max(cat, 1 - cat),
        probabilities={"cat": cat, "dog": 1 - cat},
        quality={"brightness": 120.0, "contrast": 40.0, "sharpness": 30.0},
        source="cam-1",
        latency_ms=4.0,
        input_sha256=None,
        embedding=np.zeros(8, "<f2").tobytes(),
    )


def test_a_window_spanning_a_release_lists_both_versions(workspace: Workspace) -> None:
    now = datetime.now(UTC)
    release = now - timedelta(minutes=20)  # pets@1 served before, pets@2 after
    before = [_served(i, 1, release - timedelta(minutes=10 - i)) for i in range(3)]
    after = [_served(10 + i, 2, release + timedelta(minutes=1 + i)) for i in range(5)]
    PredictionStore(workspace.db).add_many(before + after)

    result = workspace.monitor().run("production", span=timedelta(hours=1), until=now)
    assert result.version == 2  # the most common, as before
    assert result.versions == [1, 2]
    assert result.served == "pets@1 and pets@2"
    assert result.as_dict()["versions"] == [1, 2] and result.details["versions"] == {
        "1": 3,
        "2": 5,
    }
    stored = MonitorRunStore(workspace.db).get(result.id)
    assert stored is not None and (stored.version, stored.versions) == (2, [1, 2])
    report = workspace.content.get(result.report_sha256 or "").decode()
    assert "pets@1 and pets@2" in report
    # each version's compliance report finds the window that held it
    store = MonitorRunStore(workspace.db)
    assert [r.id for r in store.for_model("pets", 1)] == [result.id]
    assert [r.id for r in store.for_model("pets", 2)] == [result.id]

    only_after = workspace.monitor().run(
        "production", span=timedelta(minutes=15), until=now
    )  # a window after the release holds pets@2 alone
    assert only_after.versions == [2] and only_after.served == "pets@2"

    root = str(workspace.project.root)
    args = ["monitor", "run", "--env", "production", "--window", "1h", "--no-act", "-C", root]
    shown = runner.invoke(app, [*args, "--json"])
    assert shown.exit_code == 0, shown.output
    out = json.loads(shown.stdout)
    assert (out["version"], out["versions"]) == (2, [1, 2])
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    assert "production pets@1 and pets@2, " in text.output
    assert "8 predictions" in text.output
