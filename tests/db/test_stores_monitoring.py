"""The stores behind monitoring and governance (alerts, telemetry, monitoring runs, the audit
log) and migration 0006, each run on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from kennel.db import Database, upgrade
from kennel.db import alerts as alerts_module
from kennel.db.alerts import AlertRecords, RuleVerdict
from kennel.db.audit import AuditLog
from kennel.db.monitoring import MonitorRun, MonitorRunStore
from kennel.db.telemetry import Sample, TelemetryStore
from kennel.errors import NotFoundError, StateError
from tests.helpers import schema_at

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(metadata_url: str) -> Iterator[Database]:
    database = Database.open(metadata_url)
    yield database
    database.dispose()


def _verdict(firing: bool, value: float, rule: str = "low-acc") -> RuleVerdict:
    return RuleVerdict(rule, "critical", "performance.accuracy", value, 0.9,
                       f"performance.accuracy = {value:.4g} < 0.9", firing)  # fmt: skip


def test_alerts_open_bump_resolve_in_one_incident(db: Database) -> None:
    records = AlertRecords(db)
    first = records.apply([_verdict(True, 0.7), _verdict(False, 1.0, "slow")],
                          subject="production", actor="mon")  # fmt: skip
    assert [a.rule for a in first.opened] == ["low-acc"] and not first.resolved
    alert = first.opened[0]
    assert (alert.state, alert.count, alert.value, alert.subject) == ("open", 1, 0.7, "production")
    assert alert.message == "performance.accuracy = 0.7 < 0.9"
    again = records.apply([_verdict(True, 0.6)], subject="production", actor="mon")
    assert not again.opened and [(a.id, a.count, a.value) for a in again.ongoing] == [
        (alert.id, 2, 0.6)
    ]
    assert again.ongoing[0].first_at == alert.first_at  # stored and read back UTC-aware
    elsewhere = records.apply([_verdict(True, 0.6)], subject="staging", actor="mon")
    assert elsewhere.opened[0].id != alert.id
    done = records.apply([_verdict(False, 0.95)], subject="production", actor="mon")
    assert [(a.id, a.state) for a in done.resolved] == [(alert.id, "resolved")]
    reopened = records.apply([_verdict(True, 0.5)], subject="production", actor="mon")
    assert reopened.opened[0].id not in (alert.id, elsewhere.opened[0].id)  # a new incident
    log = AuditLog(db)
    assert [e.action for e in reversed(log.entries())] == [
        "alert.open", "alert.open", "alert.resolve", "alert.open"
    ]  # fmt: skip
    assert log.entries(limit=1)[0].details["message"] == "performance.accuracy = 0.5 < 0.9"


def test_alert_states_actions_and_listing(db: Database) -> None:
    records = AlertRecords(db)
    alert = records.apply([_verdict(True, 0.7)], subject="production", actor="mon").opened[0]
    records.note_action(alert.id, "webhook", "POST http://hook: 200", actor="mon")
    records.note_action(alert.id, "log", "logged", actor="mon")
    acked = records.set_state(alert.id, "acknowledged", actor="oncall", note="looking")
    assert acked.state == "acknowledged"
    assert acked.actions == {"webhook": "POST http://hook: 200", "log": "logged"}
    with pytest.raises(StateError, match="already acknowledged"):
        records.set_state(alert.id, "acknowledged", actor="oncall")
    assert records.set_state(alert.id, "resolved", actor="oncall").state == "resolved"
    with pytest.raises(StateError, match="already resolved"):
        records.set_state(alert.id, "acknowledged", actor="oncall")
    with pytest.raises(NotFoundError):
        records.note_action(999, "log", "x", actor="mon")
    with pytest.raises(NotFoundError):
        records.set_state(999, "resolved", actor="mon")
    other = records.apply([_verdict(True, 0.7, "slow")], subject="production", actor="mon")
    assert [a.id for a in records.list()] == [other.opened[0].id, alert.id]  # newest first
    assert [a.id for a in records.list(state="resolved")] == [alert.id]
    assert [a.id for a in records.list(limit=1)] == [other.opened[0].id]
    assert len(records.list(limit=None)) == 2
    entry = AuditLog(db).entries(limit=3)[-1]
    assert (entry.action, entry.subject, entry.details) == (
        "alert.acknowledged", "low-acc:production", {"id": alert.id, "note": "looking"}
    )  # fmt: skip


@pytest.mark.parametrize("first", ["resolve-click", "monitor-resolves"])
def test_a_resolved_alert_is_not_reopened_by_a_click_that_waited_meanwhile(
    db: Database, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    """A person acknowledges while a monitor run (or another person) resolves the same alert:
    the one that waits reads the resolved alert and is refused, instead of writing its state
    over the resolution (which left it acknowledged with resolved_at set, and folded the
    condition's return into that closed incident so no action ran again)."""
    records = AlertRecords(db)
    alert = records.apply([_verdict(True, 0.7)], subject="production", actor="mon").opened[0]
    real = alerts_module.record

    def slow_record(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.3)  # widens the wait for the database's write lock every change has
        return real(*args, **kwargs)

    monkeypatch.setattr(alerts_module, "record", slow_record)
    errors: list[Exception] = []

    def resolve() -> None:
        if first == "resolve-click":
            records.set_state(alert.id, "resolved", actor="alice")
        else:
            records.apply([_verdict(False, 0.95)], subject="production", actor="mon")

    def acknowledge() -> None:
        try:
            records.set_state(alert.id, "acknowledged", actor="bob")
        except StateError as exc:
            errors.append(exc)

    resolver = threading.Thread(target=resolve)
    resolver.start()
    time.sleep(0.1)
    acknowledge()
    resolver.join()
    assert [str(e) for e in errors] == [f"alert {alert.id} is already resolved"]
    stored = records.get(alert.id)
    assert stored is not None and stored.state == "resolved"
    monkeypatch.setattr(alerts_module, "record", real)
    again = records.apply([_verdict(True, 0.5)], subject="production", actor="mon")
    assert [a.id for a in again.opened] != [alert.id] and len(again.opened) == 1  # a new one
    actions = [e.action for e in AuditLog(db).entries(limit=3)]
    assert "alert.acknowledged" not in actions


def test_telemetry_between_is_half_open_and_ordered(db: Database) -> None:
    store = TelemetryStore(db)
    samples = [Sample(T0 + timedelta(seconds=s), "cam-01", "humidity", 40.0 + s) for s in (2, 0, 1)]
    assert store.add(samples) == 3
    assert store.add([]) == 0
    host = Sample(T0 + timedelta(milliseconds=500), "host", "host.cpu_percent", 12.5)
    store.add(iter([host]))  # any iterable
    got = store.between(since=T0, until=T0 + timedelta(seconds=2))
    assert got == [samples[1], host, samples[2]]
    assert all(s.at.tzinfo is not None for s in got)
    assert store.between(since=T0 + timedelta(seconds=2), until=T0 + timedelta(hours=1)) == [
        samples[0]
    ]


def _run(run_id: str, versions: list[int], version: int | None, minutes: int) -> MonitorRun:
    at = T0 + timedelta(minutes=minutes)
    return MonitorRun(run_id, at, "production", at - timedelta(hours=1), at, "pets", version,
                      versions, {"window.n": 10.0, "drift.drifted": 0.0}, "cd" * 32)  # fmt: skip


def test_monitor_runs_list_every_version_of_their_window(db: Database) -> None:
    store = MonitorRunStore(db)
    spanning = store.add(_run("r2", [1, 2], 2, 2), actor="mon", n=10)
    store.add(_run("r1", [1], 1, 1), actor="mon", n=10)
    store.add(_run("r3", [], None, 3), actor="mon", n=0)
    assert store.get("r2") == spanning
    assert store.get("missing") is None
    assert [r.id for r in store.for_model("pets", 1)] == ["r1", "r2"]  # oldest first
    assert [r.id for r in store.for_model("pets", 2)] == ["r2"]
    assert store.for_model("other", 1) == []
    entry = AuditLog(db).entries(limit=3)[-1]
    assert (entry.action, entry.subject, entry.details) == (
        "monitor.run", "production:r2", {"n": 10, "drifted": 0.0}
    )  # fmt: skip


def test_an_incident_belongs_to_the_versions_of_the_window_that_raised_it(db: Database) -> None:
    """pets@2 served production, was rolled back and kept an alias (staging) while pets@1
    served again: an alert then is pets@1's incident, not pets@2's (the compliance report
    counted every alert raised while a version held any alias)."""
    from kennel.govern import compliance

    def _raised_on(runs: MonitorRunStore, alert: Any, model: str, version: int) -> bool:
        held = {r.id for r in runs.for_model(model, version)}
        return compliance._raised_on(runs, alert, held)

    store = MonitorRunStore(db)
    store.add(_run("r1", [2], 2, 1), actor="mon", n=10)
    store.add(_run("r2", [1], 1, 5), actor="mon", n=10)
    assert store.raised_at("production", T0) is None  # before any run
    assert store.raised_at("production", T0 + timedelta(minutes=5)).id == "r2"  # type: ignore[union-attr]
    assert store.raised_at("staging", T0 + timedelta(minutes=9)) is None
    records = AlertRecords(db)
    alert = records.apply([_verdict(True, 0.7)], subject="production", actor="mon").opened[0]
    raised = dataclasses.replace(alert, first_at=T0 + timedelta(minutes=6))
    assert _raised_on(store, raised, "pets", 1) and not _raised_on(store, raised, "pets", 2)
    earlier = dataclasses.replace(alert, first_at=T0 + timedelta(minutes=2))
    assert _raised_on(store, earlier, "pets", 2) and not _raised_on(store, earlier, "other", 2)
    # the run that opened it, recorded on the alert (0013), wins over the order in time: r2
    # was stored by another process between r1 and r1's verdicts
    mine = records.apply([_verdict(True, 0.6, "drop")], subject="production", actor="mon",
                         run_id="r1").opened[0]  # fmt: skip
    assert mine.run_id == "r1" and records.get(mine.id).run_id == "r1"  # type: ignore[union-attr]
    late = dataclasses.replace(mine, first_at=T0 + timedelta(minutes=6))
    assert _raised_on(store, late, "pets", 2) and not _raised_on(store, late, "pets", 1)


def test_audit_log_appends_finds_by_subject_and_verifies(db: Database) -> None:
    log = AuditLog(db)
    # actions whose rows verify does not check against the log (a model.register entry with
    # no registered version would be a version deleted from the database)
    assert log.append(actor="a", action="service.reload", subject="pets@1") == 1
    log.append(actor="b", action="feed.publish", subject="pets@1", details={"alias": "prod"})
    log.append(actor="c", action="auth.login", subject="abcd1234")
    assert [(e.seq, e.action) for e in log.about("pets")] == [
        (1, "service.reload"), (2, "feed.publish")
    ]  # fmt: skip
    assert log.about("pets")[1].details == {"alias": "prod"}
    assert [e.seq for e in log.entries(limit=2)] == [3, 2]
    verdict = log.verify()
    assert verdict.ok and verdict.checked == 3


def test_audit_about_a_model_stops_at_its_name(db: Database) -> None:
    """``about("pets")`` (what ``kennel models compliance pets@2`` reads) is about pets: not
    petshop, and the name's ``%``, ``_`` or ``\\`` are letters, not wildcards (issue #12)."""
    log = AuditLog(db)
    subjects = ["pets@1", "petshop@1", "pets@production", "PETS@1", "pets", "pets2@1",
                "p_ts@1", "pe%s@1", "a\\b@1", "axb@1", "p_ts@2"]  # fmt: skip
    for subject in subjects:
        log.append(actor="a", action="model.register", subject=subject)
    assert [e.subject for e in log.about("pets")] == ["pets@1", "pets@production", "pets"]
    assert [e.subject for e in log.about("p_ts")] == ["p_ts@1", "p_ts@2"]
    assert [e.subject for e in log.about("pe%")] == []
    assert [e.subject for e in log.about("pe%s")] == ["pe%s@1"]
    assert [e.subject for e in log.about("a\\b")] == ["a\\b@1"]
    assert [e.subject for e in log.about("pets", separator=":")] == ["pets"]


def test_migration_0006_lists_the_one_version_older_runs_knew(metadata_url: str) -> None:
    engine = schema_at(metadata_url, "0005")
    insert = text(
        "INSERT INTO monitor_runs (id, at, environment, since, until, model, version, metrics)"
        " VALUES (:id, :at, 'production', :at, :at, 'pets', :version, '{}')"
    )
    with engine.begin() as connection:
        for run_id, version in (("a", 1), ("b", 2), ("c", 1), ("d", None)):
            connection.execute(insert, {"id": run_id, "at": T0, "version": version})
    upgrade(engine)  # to head
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, versions FROM monitor_runs ORDER BY id")).all()
    engine.dispose()
    filled = {r[0]: r[1] if isinstance(r[1], list) else json.loads(r[1]) for r in rows}
    assert filled == {"a": [1], "b": [2], "c": [1], "d": []}
    db = Database.open(metadata_url)
    try:
        assert sorted(r.id for r in MonitorRunStore(db).for_model("pets", 1)) == ["a", "c"]
    finally:
        db.dispose()
