"""Governance end to end on loopback: production traffic with delayed feedback, a monitoring
cycle whose alert retrains (delivery mode: the new version stops at staging), prediction
lineage to source files, alert dedupe and states, and a tampered audit trail."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import update
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import RuleConfig
from kennel.datasets.synth import render
from kennel.db import Database
from kennel.db.schema import AuditRow
from kennel.errors import StateError
from kennel.govern.alerts import AlertStore
from kennel.govern.cycle import monitor_once
from kennel.govern.retrain import FeedbackSource, labelled_added
from kennel.wiring import Workspace
from tests.serving import served_project, start_env

runner = CliRunner()


def _configure(root: Path, rules: list[dict[str, object]]) -> None:
    path = root / "kennel.yaml"
    config = yaml.safe_load(path.read_text())
    config["monitor"] = {**config.get("monitor", {}), "rules": rules, "min_labels": 10}
    path.write_text(yaml.safe_dump(config))


def test_traffic_feedback_alert_retrains_into_staging_only(tmp_path: Path) -> None:
    project = served_project(tmp_path, models=1)
    _configure(
        project.root,
        [{"name": "retrain-on-feedback", "metric": "performance.labelled", "op": ">=",
          "threshold": 10, "severity": "warning", "actions": ["log", "retrain"]}],
    )  # fmt: skip
    ws = Workspace.load(project.root)
    ws.registry.set_alias("pets", "production", 1, actor="test", reason="first release")
    production, staging = start_env(ws, "production"), start_env(ws, "staging")
    token = ws.tokens.create("operator", "feedback-bot")[0]
    traffic = [render(i, seed=99) for i in range(24)]  # new photos, not in the training data
    ids, predicted = [], []
    try:
        with httpx.Client(base_url=production.url, timeout=30) as client:
            for label, data in traffic:
                answer = client.post(
                    "/v1/predict", content=data, headers={"x-kennel-source": "cam-1"}
                ).json()
                assert answer["model"]["version"] == 1
                ids.append(answer["prediction_id"])
                predicted.append(answer["label"])
                feedback = client.post(  # the true label arrives later
                    "/v1/feedback",
                    json={"prediction_id": answer["prediction_id"], "label": label},
                    headers={"authorization": f"Bearer {token}"},
                )
                assert feedback.status_code == 200, feedback.text
        assert production.service.predlog.flush()

        lineage = runner.invoke(app, ["lineage", "prediction", ids[0], "--all-files", "--json",
                                      "-C", str(project.root)])  # fmt: skip
        assert lineage.exit_code == 0, lineage.output
        traced = json.loads(lineage.output)
        assert traced["prediction"]["model"] == "pets@1"
        assert traced["feedback"]["label"] == traffic[0][0]
        files = traced["dataset"]["source_files"]
        assert files and all(f.endswith(".jpg") for f in files)
        assert {Path(f).name for f in files} <= {p.name for p in (tmp_path / "lake").rglob("*")}

        cycle = monitor_once(ws.monitor(), ws.actions(), environment="production",
                             span=timedelta(hours=1))  # fmt: skip
        assert [a.rule for a in cycle.alerts.opened] == ["retrain-on-feedback"]
        truth = [label for label, _ in traffic]  # the seed's "biased to detect dogs", per window
        dog_ratio = predicted.count("dog") / max(1, truth.count("dog"))
        ratio = cycle.result.metrics["fairness.predicted_rate_ratio.dog"]
        assert abs(ratio - dog_ratio) < 1e-9
        outcome = next(iter(cycle.actions.values()))
        assert outcome["log"].startswith("logged")
        assert "pets@2" in outcome["retrain"] and "awaits QA approval" in outcome["retrain"]
        assert ws.registry.resolve("pets@staging").version == 2
        assert ws.registry.resolve("pets@production").version == 1  # never past the gate
        new = ws.registry.resolve("pets@2")
        assert new.dataset_version is not None
        rows = ws.catalog.rows(ws.catalog.resolve(f"park@{new.dataset_version}"))
        fed = [r for r in rows if r.uri.startswith("feedback/production/")]
        assert len(fed) == len(traffic)
        # captured inside the alerting window, so the retrain gave them their own share
        assert {json.loads(r.attrs)["window"] for r in fed} == {"alert"}
        assert ws.tracker.get(new.run_id).params["balance_by"] == "window"
        assert f"(+{len(traffic)} labelled production images)" in outcome["retrain"]
        # a retrain killed after its ingest committed: the next one's ingest adds nothing, yet
        # it trains on those images all the same, and says so (it said +0)
        again_in = ws.ingestor().run(FeedbackSource(ws.db, ws.content, "production"), "park")
        assert again_in.added == 0 and again_in.version.id == new.dataset_version
        champion = ws.registry.resolve("pets@1")
        assert labelled_added(ws.catalog, champion, again_in.version, "production") == len(traffic)
        # the same condition in the next window is the same incident: no second retrain
        again = monitor_once(ws.monitor(), ws.actions(), environment="production",
                             span=timedelta(hours=1))  # fmt: skip
        assert not again.alerts.opened and again.alerts.ongoing[0].count == 2
        assert ws.registry.versions("pets")[-1].version == 2
        # while pets@1 stays the champion (as when a retrain's model fails its gates), a
        # person's retrain on the same labels (the button clicked again) trains nothing
        ws.registry.set_alias("pets", "champion", 1, actor="test", reason="pets@2 failed")
        with pytest.raises(StateError, match=r"pets@2 was already trained on park@.* warm-st"):
            ws.retrain(window=(new.created_at - timedelta(hours=1), new.created_at))
        assert ws.registry.versions("pets")[-1].version == 2

        html_out = str(tmp_path / "c.html")
        report = runner.invoke(
            app,
            [
                "models",
                "compliance",
                "pets@1",
                "--out",
                html_out,
                "--json",
                "-C",
                str(project.root),
            ],
        )
        assert report.exit_code == 0, report.output
        compliance = json.loads(report.output)
        assert compliance["audit"]["chain_ok"] and compliance["data"]["training_files"] > 0
        moves = [(e["alias"], e["to_version"]) for e in compliance["releases"]]
        assert ("production", 1) in moves and ("champion", 1) in moves
        assert len(compliance["monitoring"]) == 2
        assert [i["rule"] for i in compliance["incidents"]] == ["retrain-on-feedback"]
        page = (tmp_path / "c.html").read_text()
        assert "Compliance report: pets@1" in page and "<pre>" not in page  # tables, not JSON
        measured = [
            r["metrics"]["performance.accuracy"]
            for r in compliance["monitoring"]
            if r["metrics"].get("performance.accuracy") is not None
        ]
        points = re.findall(r'data-series="measured" data-x="[^"]*" data-y="([^"]*)"', page)
        assert measured and [float(p) for p in points] == pytest.approx(measured, abs=1e-5)
    finally:
        production.stop()
        staging.stop()
        ws.close()


def test_alert_states_and_dedupe(tmp_path: Path) -> None:
    db = Database.open(f"sqlite:///{tmp_path / 'a.db'}")
    store = AlertStore(db)
    rule = RuleConfig(name="low-acc", metric="performance.accuracy", op="<", threshold=0.9)
    first = store.evaluate([rule], {"performance.accuracy": 0.7}, subject="production")
    assert len(first.opened) == 1 and first.opened[0].state == "open"
    assert store.evaluate([rule], {}, subject="production").ongoing == []  # no value: no verdict
    alert_id = first.opened[0].id
    store.set_state(alert_id, "acknowledged", actor="oncall", note="looking")
    second = store.evaluate([rule], {"performance.accuracy": 0.6}, subject="production")
    assert second.opened == [] and second.ongoing[0].count == 2
    assert second.ongoing[0].state == "acknowledged"
    other = store.evaluate([rule], {"performance.accuracy": 0.6}, subject="staging")
    assert len(other.opened) == 1  # another subject is another incident
    cleared = store.evaluate([rule], {"performance.accuracy": 0.95}, subject="production")
    assert [a.id for a in cleared.resolved] == [alert_id]
    assert store.list(state="resolved")[0].id == alert_id
    db.dispose()


def test_an_alert_whose_rule_was_taken_out_is_resolved(tmp_path: Path) -> None:
    """No window can stop a rule that is no longer in kennel.yaml from firing: its open alert
    stayed open for ever (and counted as an open incident in compliance reports)."""
    from kennel.db.audit import AuditLog

    db = Database.open(f"sqlite:///{tmp_path / 'a.db'}")
    store = AlertStore(db)
    old = RuleConfig(name="old", metric="performance.accuracy", op="<", threshold=0.9)
    new = RuleConfig(name="new", metric="performance.accuracy", op="<", threshold=0.5)
    (opened,) = store.evaluate([old], {"performance.accuracy": 0.7}, subject="production").opened
    (other,) = store.evaluate([old], {"performance.accuracy": 0.7}, subject="staging").opened
    kept = store.evaluate([old, new], {}, subject="production")  # no value: no verdict, kept
    assert kept.resolved == [] and store.get(opened.id).state == "open"  # type: ignore[union-attr]
    later = store.evaluate([new], {}, subject="production")
    assert [(a.id, a.state) for a in later.resolved] == [(opened.id, "resolved")]
    assert store.get(other.id).state == "open"  # type: ignore[union-attr]  # its own cycle says
    entry = AuditLog(db).entries(limit=1)[0]
    assert entry.action == "alert.resolve" and entry.details["why"].startswith("its rule is no")
    assert AuditLog(db).verify().ok
    db.dispose()


def test_audit_verify_fails_after_a_row_is_altered(tmp_path: Path) -> None:
    root = tmp_path / "p"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    assert runner.invoke(app, ["token", "create", "--role", "qa", "-C", str(root)]).exit_code == 0
    ok = runner.invoke(app, ["audit", "verify", "-C", str(root)])
    assert ok.exit_code == 0 and "intact" in ok.output
    ws = Workspace.load(root)
    with ws.db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.seq == 1).values(actor="mallory"))
    ws.close()
    broken = runner.invoke(app, ["audit", "verify", "-C", str(root)])
    assert broken.exit_code == 1 and "entry 1" in broken.output


def test_a_retrain_on_images_the_dataset_already_holds_stops_before_training(
    tmp_path: Path,
) -> None:
    """Feedback on photos from the training lake itself (the same bytes) passes the "labelled
    images since the champion" check, then adds nothing: the retrain failed deep in training
    (no image had the window column) with a failed run recorded."""
    from datetime import UTC, datetime

    from kennel.db.locking import lease

    project = served_project(tmp_path, models=1)
    ws = Workspace.load(project.root)
    ws.registry.set_alias("pets", "production", 1, actor="test", reason="first release")
    production = start_env(ws, "production")
    token = ws.tokens.create("operator", "feedback-bot")[0]
    lake = sorted(p for p in (tmp_path / "lake").rglob("*.jpg"))[:6]
    try:
        with httpx.Client(base_url=production.url, timeout=30) as client:
            for path in lake:
                answer = client.post("/v1/predict", content=path.read_bytes()).json()
                feedback = client.post(
                    "/v1/feedback",
                    json={"prediction_id": answer["prediction_id"], "label": path.parent.name},
                    headers={"authorization": f"Bearer {token}"},
                )
                assert feedback.status_code == 200, feedback.text
        assert production.service.predlog.flush()
        runs = len(ws.tracker.runs())
        window = (datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC))
        # another process retraining the model (the monitor's action, a dashboard, the CLI)
        # holds its lease: this one is refused before it ingests or trains anything
        versions = len(ws.catalog.store.page("park", limit=100))
        with lease(ws.db.engine, "retrain:pets") as held:
            assert held
            with pytest.raises(StateError, match="a retrain of pets is running in another"):
                ws.retrain(window=window)
        assert len(ws.catalog.store.page("park", limit=100)) == versions
        with pytest.raises(StateError, match=r"already in park@.*learn nothing new"):
            ws.retrain(window=window)
        assert len(ws.tracker.runs()) == runs  # no training run was started
        assert [m.version for m in ws.registry.versions("pets")] == [1]
    finally:
        production.stop()
        ws.close()


def test_actions_a_killed_cycle_left_undone_run_in_the_next(tmp_path: Path) -> None:
    """A cycle killed between opening an incident and acting (a retrain takes minutes) left
    the incident open with no actions, and later cycles only bumped its count; now the next
    cycle runs what is missing, unless a live process is still acting on it."""
    from kennel.config import init_project

    project, _ = init_project(tmp_path / "p")
    _configure(project.root, [{"name": "watch", "metric": "window.n", "op": ">=",
                               "threshold": 0, "actions": ["log"]}])  # fmt: skip
    ws = Workspace.load(project.root)
    try:
        store = AlertStore(ws.db)
        rule = ws.project.config.monitor.rules[0]
        [alert] = store.evaluate([rule], {"window.n": 0.0}, subject="production").opened
        # what the killed cycle left: the incident, no action

        def cycle() -> dict[int, dict[str, str]]:
            return monitor_once(ws.monitor(), ws.actions(), environment="production",
                                span=timedelta(hours=1)).actions  # fmt: skip

        with store.claim(alert.id) as mine:  # a live process acting on it now
            assert mine
            assert cycle() == {}
        assert store.get(alert.id).actions == {}
        done = cycle()
        assert done[alert.id]["log"].startswith("logged: window.n = 0")
        assert cycle() == {}  # done once: not again
        assert store.get(alert.id).count == 4
    finally:
        ws.close()


def test_a_shorter_window_does_not_resolve_an_incident_a_longer_one_raised(
    tmp_path: Path,
) -> None:
    """`kennel monitor run --window 20s` after the daily run used to resolve the day's
    incidents: a minute with no decode failures says nothing of a day that had them."""
    from datetime import UTC, datetime, timedelta

    from kennel.db.monitoring import MonitorRun, MonitorRunStore

    db = Database.open(f"sqlite:///{tmp_path / 'a.db'}")
    store, runs = AlertStore(db), MonitorRunStore(db)
    rule = RuleConfig(name="decode-failures", metric="integrity.decode_failure_rate", op=">",
                      threshold=0.05)  # fmt: skip
    now = datetime.now(UTC)

    made: list[str] = []

    def window(run_id: str, span: timedelta) -> str:  # each run a minute after the one before
        made.append(run_id)
        at = now + timedelta(minutes=len(made))
        runs.add(MonitorRun(run_id, at, "production", at - span, at, "pets", 1, [1], {}, None),
                 actor="kennel-monitor", n=40)  # fmt: skip
        return run_id

    day, minute = timedelta(hours=2), timedelta(seconds=20)
    raised = store.evaluate([rule], {rule.metric: 0.2}, subject="production",
                            run_id=window("day1", day))  # fmt: skip
    assert len(raised.opened) == 1
    short = store.evaluate([rule], {rule.metric: 0.0}, subject="production",
                           run_id=window("minute", minute))  # fmt: skip
    assert short.resolved == [] and [a.id for a in short.kept] == [raised.opened[0].id]
    assert store.get(raised.opened[0].id).state == "open"  # type: ignore[union-attr]
    # a window as long as the one that raised it speaks for it
    again = store.evaluate([rule], {rule.metric: 0.0}, subject="production",
                           run_id=window("day2", day))  # fmt: skip
    assert [a.id for a in again.resolved] == [raised.opened[0].id] and again.kept == []
    # raised by a minute, confirmed by a day: the next quiet minute keeps it open too
    raised = store.evaluate([rule], {rule.metric: 0.2}, subject="production",
                            run_id=window("minute2", minute))  # fmt: skip
    confirmed = store.evaluate([rule], {rule.metric: 0.3}, subject="production",
                               run_id=window("day3", day))  # fmt: skip
    assert [a.id for a in confirmed.ongoing] == [raised.opened[0].id]
    quiet = store.evaluate([rule], {rule.metric: 0.0}, subject="production",
                           run_id=window("minute3", minute))  # fmt: skip
    assert quiet.resolved == [] and [a.id for a in quiet.kept] == [raised.opened[0].id]
    db.dispose()
