"""The store reads the dashboard makes, each on SQLite and on PostgreSQL: monitoring runs by
environment and time, one alert and alert counts, the audit filtered and paged in SQL,
certification history, the capped prediction search, and series aggregated by the database
(requests per time bucket, telemetry per bucket)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from kennel.db import Database
from kennel.db.alerts import AlertRecords, RuleVerdict
from kennel.db.audit import AuditLog
from kennel.db.deployments import CertificationVerdict, DeploymentStore
from kennel.db.monitoring import MonitorRun, MonitorRunStore
from kennel.db.predictions import LoggedPrediction, PredictionQuery, PredictionStore
from kennel.db.telemetry import Sample, TelemetryStore
from kennel.errors import ConfigError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(metadata_url: str) -> Iterator[Database]:
    database = Database.open(metadata_url)
    yield database
    database.dispose()


def _run(env: str, end: datetime, accuracy: float) -> MonitorRun:
    return MonitorRun(uuid.uuid4().hex, end, env, end - timedelta(hours=1), end, "pets", 1, [1],
                      {"performance.accuracy": accuracy}, None)  # fmt: skip


def test_monitor_runs_by_environment_and_time(db: Database) -> None:
    store = MonitorRunStore(db)
    for i in range(5):
        store.add(_run("production", T0 + timedelta(hours=i), 0.9 - i / 100), actor="m", n=10)
    store.add(_run("staging", T0 + timedelta(hours=2, minutes=30), 0.5), actor="m", n=3)
    found = store.between(
        "production", since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3)
    )
    assert [r.until for r in found] == [T0 + timedelta(hours=h) for h in (1, 2, 3)]  # oldest first
    assert found[0].metrics == {"performance.accuracy": 0.89}
    newest_two = store.between("production", since=T0, until=T0 + timedelta(days=1), limit=2)
    assert [r.until for r in newest_two] == [T0 + timedelta(hours=3), T0 + timedelta(hours=4)]
    anywhere = store.between(None, since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=3))
    assert [r.environment for r in anywhere] == ["production", "staging", "production"]
    latest = store.latest("staging")
    assert latest is not None and latest.until == T0 + timedelta(hours=2, minutes=30)
    assert store.latest() is not None and store.latest().until == T0 + timedelta(hours=4)  # type: ignore[union-attr]
    assert store.latest("nowhere") is None
    assert store.environments() == ["production", "staging"]


def test_one_alert_counts_and_alerts_in_a_range(db: Database) -> None:
    records = AlertRecords(db)
    verdict = RuleVerdict("low-acc", "critical", "performance.accuracy", 0.7, 0.9, "low", True)
    opened = records.apply([verdict], subject="production", actor="m").opened[0]
    other = records.apply([verdict], subject="staging", actor="m").opened[0]
    records.set_state(other.id, "acknowledged", actor="olga")
    assert records.get(opened.id) == opened
    assert records.get(opened.id + 1000) is None
    assert records.counts() == {"open": 1, "acknowledged": 1}
    now = datetime.now(UTC)
    seen = records.between(since=now - timedelta(minutes=5), until=now + timedelta(minutes=5))
    assert [a.id for a in seen] == [opened.id, other.id]
    only = records.between(since=now - timedelta(minutes=5), until=now, subject="staging")
    assert [a.id for a in only] == [other.id]
    assert records.between(since=now - timedelta(days=2), until=now - timedelta(days=1)) == []


def test_audit_filtered_by_actor_and_action_family_and_paged_in_sql(db: Database) -> None:
    log = AuditLog(db)
    for actor, action in [("olga", "alias.release"), ("olga", "alert.acknowledged"),
                          ("quinn", "model.approved"), ("olga", "alias.rollback"),
                          ("olga", "aliasx.other"), ("olga", "alias_release"),
                          ("ada", "alias")]:  # fmt: skip
        log.append(actor=actor, action=action, subject="s")
    assert log.head() == 7
    olga = log.query(actor="olga", action="alias")
    # the family "alias" and its dotted members; neither aliasx.* nor alias_release ("_" is
    # no wildcard here)
    assert [(e.seq, e.action) for e in olga] == [(4, "alias.rollback"), (1, "alias.release")]
    assert [e.seq for e in log.query(action="alias.")] == [7, 4, 1]
    assert [e.seq for e in log.query(action="%")] == []
    first = log.query(limit=3)
    assert [e.seq for e in first] == [7, 6, 5]
    assert [e.seq for e in log.query(limit=3, before=first[-1].seq)] == [4, 3, 2]
    assert [e.seq for e in log.query(actor="olga", before=4)] == [2, 1]
    assert log.actors() == ["ada", "olga", "quinn"]
    assert log.actions(limit=2) == ["alert.acknowledged", "alias"]


def test_certification_history_of_a_model_newest_first(db: Database) -> None:
    store = DeploymentStore(db)
    for version, env, passed in [(1, "staging", True), (2, "staging", False),
                                 (2, "production", True), (3, "staging", True)]:  # fmt: skip
        store.add_certification(
            CertificationVerdict(
                "pets",
                version,
                env,
                passed,
                [] if passed else ["slow"],
                None,
                {"images": 8},
                T0 + timedelta(minutes=version),
            ),
            actor="ci",
        )
    everywhere = store.certification_history("pets")
    assert [(c.version, c.environment) for c in everywhere] == [
        (3, "staging"), (2, "production"), (2, "staging"), (1, "staging")]  # fmt: skip
    staging = store.certification_history("pets", environment="staging", limit=2)
    assert [(c.version, c.passed, c.reasons) for c in staging] == [
        (3, True, []),
        (2, False, ["slow"]),
    ]
    assert store.certification_history("other") == []


def _prediction(i: int, at: datetime, **changes: object) -> LoggedPrediction:
    values: dict[str, object] = {
        "id": f"p{i:04d}", "at": at, "environment": "production", "model": "pets", "version": 1,
        "label": "dog" if i % 2 else "cat", "confidence": 0.5 + (i % 50) / 100,
        "probabilities": {}, "quality": {}, "source": f"cam-{i % 3}", "latency_ms": float(i % 10),
        "input_sha256": "a" * 64 if i % 4 == 0 else None, "embedding": None,
    }  # fmt: skip
    values.update(changes)
    return LoggedPrediction(**values)  # type: ignore[arg-type]


def test_the_prediction_search_filters_pages_and_caps(db: Database) -> None:
    store = PredictionStore(db)
    store.add_many([_prediction(i, T0 + timedelta(minutes=i)) for i in range(120)])
    store.add_many([_prediction(999, T0 + timedelta(minutes=5), environment="staging")])
    for i in range(0, 120, 10):
        store.add_feedback(f"p{i:04d}", "cat", actor="keeper")
    day = (T0, T0 + timedelta(days=1))
    hits, more = store.search(PredictionQuery(*day, environment="production", limit=50))
    assert more and [h.id for h in hits] == [
        f"p{i:04d}" for i in range(119, 69, -1)
    ]  # newest first
    rest, more = store.search(PredictionQuery(*day, environment="production", offset=100))
    assert not more and [h.id for h in rest] == [f"p{i:04d}" for i in range(19, -1, -1)]
    assert [h.id for h in store.search(PredictionQuery(*day, environment="staging"))[0]] == [
        "p0999"
    ]
    labelled, _ = store.search(PredictionQuery(*day, feedback=True, limit=200))
    assert {h.id for h in labelled} == {f"p{i:04d}" for i in range(0, 120, 10)}
    assert all(h.truth == "cat" and h.kept == (int(h.id[1:]) % 4 == 0) for h in labelled)
    unlabelled, _ = store.search(PredictionQuery(*day, feedback=False, limit=200))
    assert len(unlabelled) == 121 - 12 and all(h.truth is None for h in unlabelled)
    picky, _ = store.search(PredictionQuery(*day, source="cam-1", label="dog", min_confidence=0.9,
                                            max_confidence=0.95, limit=200))  # fmt: skip
    every = [_prediction(i, T0) for i in range(120)]
    expected = [p for p in every if p.source == "cam-1" and p.label == "dog"
                and 0.9 <= p.confidence <= 0.95]  # fmt: skip
    assert sorted(h.id for h in picky) == sorted(p.id for p in expected) and expected
    window, _ = store.search(
        PredictionQuery(T0 + timedelta(minutes=10), T0 + timedelta(minutes=12))
    )
    assert [h.id for h in window] == ["p0011", "p0010"]  # [since, until)
    refused = [({"until": T0}, "until' must be after"),
               ({"until": T0 + timedelta(days=32)}, "at most 31 days"),
               ({"limit": 201}, "1 to 200"), ({"offset": 10_001}, "10,000"),
               ({"min_confidence": 1.5}, "between 0 and 1"),
               ({"min_confidence": 0.8, "max_confidence": 0.2}, "above max_conf")]  # fmt: skip
    for bad, words in refused:
        with pytest.raises(ConfigError, match=words):
            PredictionQuery(**{"since": T0, "until": T0 + timedelta(days=1), **bad})  # type: ignore[arg-type]
    assert store.count_labelled("production", since=T0) == 6  # labelled and kept: every 20th
    assert store.count_labelled("production", since=datetime.now(UTC) + timedelta(days=1)) == 0


def test_requests_and_telemetry_are_bucketed_by_the_database(db: Database) -> None:
    store = PredictionStore(db)
    # 10 requests in the first minute, 5 in the third, none in the second
    store.add_many([_prediction(i, T0 + timedelta(seconds=6 * i), latency_ms=float(i))
                    for i in range(10)])  # fmt: skip
    store.add_many([_prediction(100 + i, T0 + timedelta(minutes=2, seconds=i), latency_ms=50.0)
                    for i in range(5)])  # fmt: skip
    store.add_many([_prediction(200, T0 + timedelta(minutes=1), environment="staging")])
    buckets = store.traffic("production", since=T0, until=T0 + timedelta(minutes=3), buckets=3)
    assert [(b.start, b.requests) for b in buckets] == [(T0, 10), (T0 + timedelta(minutes=2), 5)]
    assert buckets[0].width_s == 60 and buckets[0].per_minute == 10
    assert buckets[0].mean_latency_ms == pytest.approx(4.5)
    assert (buckets[0].max_latency_ms, buckets[1].mean_latency_ms) == (9.0, 50.0)
    telemetry = TelemetryStore(db)
    telemetry.add([Sample(T0 + timedelta(seconds=s), cam, metric, value)
                   for s, cam, metric, value in [(1, "cam-a", "temperature", 20.0),
                                                 (2, "cam-a", "temperature", 22.0),
                                                 (70, "cam-a", "temperature", 30.0),
                                                 (3, "cam-b", "temperature", 10.0),
                                                 (4, "cam-a", "humidity", 50.0),
                                                 (5, "cam-a", "zz.last", 1.0)]])  # fmt: skip
    series = telemetry.series(since=T0, until=T0 + timedelta(minutes=2), buckets=2, metrics=2)
    assert [(p.metric, p.source, p.start, p.mean, p.low, p.high, p.n) for p in series] == [
        ("humidity", "cam-a", T0, 50.0, 50.0, 50.0, 1),
        ("temperature", "cam-a", T0, 21.0, 20.0, 22.0, 2),
        ("temperature", "cam-a", T0 + timedelta(minutes=1), 30.0, 30.0, 30.0, 1),
        ("temperature", "cam-b", T0, 10.0, 10.0, 10.0, 1),
    ]  # the first two metrics by name: zz.last is left out
    assert telemetry.series(since=T0 - timedelta(days=1), until=T0) == []


def test_the_same_label_sent_again_keeps_its_time_and_a_new_one_takes_now(db: Database) -> None:
    """Re-sending identical feedback moved its time to now, so a retrain's "labelled since the
    champion" counted it afresh: the guard could be passed with no new label."""
    store = PredictionStore(db)
    store.add_many([_prediction(1, T0, input_sha256="b" * 64)])
    first = store.add_feedback("p0001", "cat", actor="keeper")
    since = first.at + timedelta(microseconds=1)
    again = store.add_feedback("p0001", "cat", actor="someone-else")
    assert (again.at, again.actor) == (first.at, "keeper")
    assert store.count_labelled("production", since=since) == 0
    changed = store.add_feedback("p0001", "dog", actor="someone-else")
    assert changed.at > first.at and store.count_labelled("production", since=since) == 1
    assert [e.details.get("unchanged") for e in AuditLog(db).entries(limit=3)] == [
        None, True, None
    ]  # fmt: skip
