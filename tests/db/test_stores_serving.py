"""The stores behind deployment and serving (certifications and approvals, the prediction log
and feedback, tokens, offline scores), each run on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from kennel.db import Database
from kennel.db.audit import AuditLog
from kennel.db.deployments import CertificationVerdict, DeploymentStore
from kennel.db.predictions import InputRejection, LoggedPrediction, PredictionStore
from kennel.db.scores import Score, ScoreTable
from kennel.db.tokens import Token, TokenRecords
from kennel.errors import AuthError, ConfigError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(metadata_url: str) -> Iterator[Database]:
    database = Database.open(metadata_url)
    yield database
    database.dispose()


def _actions(db: Database) -> list[tuple[str, str, str]]:
    return [(e.actor, e.action, e.subject) for e in reversed(AuditLog(db).entries())]


# -- deployments ------------------------------------------------------------------------------
def _verdict(version: int, environment: str, passed: bool, at: datetime) -> CertificationVerdict:
    return CertificationVerdict(
        model="pets",
        version=version,
        environment=environment,
        passed=passed,
        reasons=[] if passed else ["p99 latency 900.0 ms exceeds 500 ms"],
        report_sha256="ab" * 32,
        summary={"images": 40, "p99_ms": 12.5},
        at=at,
    )


def test_certifications_newest_per_environment_and_audited(db: Database) -> None:
    store = DeploymentStore(db)
    failed = store.add_certification(_verdict(1, "staging", False, T0), actor="ci")
    passed = store.add_certification(
        _verdict(1, "staging", True, T0 + timedelta(minutes=5)), actor="ci"
    )
    store.add_certification(_verdict(1, "production", False, T0), actor="ci")
    store.add_certification(_verdict(2, "staging", True, T0), actor="ci")
    assert failed.id is not None and passed.id is not None and passed.id > failed.id

    latest = store.latest_certification("pets", 1, "staging")
    assert latest == passed  # the entity that went in comes back, id and all
    assert latest is not None and latest.at == T0 + timedelta(minutes=5)  # UTC-aware
    assert store.latest_certification("pets", 3, "staging") is None
    history = store.certifications("pets", 1)
    assert [(c.environment, c.passed) for c in history] == [
        ("staging", False),
        ("staging", True),
        ("production", False),
    ]
    assert history[0].reasons == ["p99 latency 900.0 ms exceeds 500 ms"]
    assert history[0].summary == {"images": 40, "p99_ms": 12.5}
    assert _actions(db) == [("ci", "model.certify", "pets@1")] * 3 + [
        ("ci", "model.certify", "pets@2")
    ]
    details = AuditLog(db).entries(limit=4)[-1].details
    assert details == {
        "environment": "staging",
        "passed": False,
        "reasons": ["p99 latency 900.0 ms exceeds 500 ms"],
        "report": "ab" * 32,
    }


def test_approvals_newest_decision_wins_and_is_audited(db: Database) -> None:
    store = DeploymentStore(db)
    assert store.latest_approval("pets", 1) is None
    approved = store.add_approval("pets", 1, "approved", actor="quinn", role="qa", note="ok")
    assert approved.actor == "quinn (qa)" and approved.id is not None
    assert approved.at.tzinfo is not None
    store.add_approval("pets", 1, "rejected", actor="ada", role="admin", note="bias found")
    store.add_approval("pets", 2, "approved", actor="quinn", role="qa", note="", token="0a1b2c3d")
    latest = store.latest_approval("pets", 1)
    assert latest is not None
    assert (latest.decision, latest.actor, latest.note) == ("rejected", "ada (admin)", "bias found")
    assert [a.decision for a in store.approvals("pets", 1)] == ["approved", "rejected"]
    assert store.approvals("pets", 1)[0] == approved
    assert _actions(db) == [
        ("quinn", "model.approved", "pets@1"),
        ("ada", "model.rejected", "pets@1"),
        ("quinn", "model.approved", "pets@2"),
    ]
    # which token decided: two tokens may share a name
    assert AuditLog(db).entries(limit=1)[0].details == {
        "note": "",
        "role": "qa",
        "token": "0a1b2c3d",
    }


def test_a_decision_posted_again_is_the_same_decision(db: Database) -> None:
    """A double click or a replayed form: the newest decision, same person, same note (the same
    words), is not recorded (nor audited) twice; anything else that differs is a new decision."""
    store = DeploymentStore(db)
    first = store.add_approval("pets", 1, "approved", actor="quinn", role="qa", note="ok")
    assert store.add_approval("pets", 1, "approved", actor="quinn", role="qa", note="ok") == first
    again = store.add_approval("pets", 1, "approved", actor="quinn", role="qa", note=" ok\r\n")
    assert again == first  # the same words, a form's blanks around them
    store.add_approval("pets", 1, "approved", actor="quinn", role="qa", note="checked again")
    store.add_approval("pets", 1, "approved", actor="ada", role="admin", note="checked again")
    store.add_approval("pets", 1, "rejected", actor="ada", role="admin", note="checked again")
    store.add_approval("pets", 1, "approved", actor="quinn", role="qa", note="ok")  # re-approved
    assert [(a.decision, a.actor, a.note) for a in store.approvals("pets", 1)] == [
        ("approved", "quinn (qa)", "ok"),
        ("approved", "quinn (qa)", "checked again"),
        ("approved", "ada (admin)", "checked again"),
        ("rejected", "ada (admin)", "checked again"),
        ("approved", "quinn (qa)", "ok"),
    ]
    assert len(_actions(db)) == 5


# -- predictions and feedback -----------------------------------------------------------------
def _prediction(i: int, *, version: int = 1, environment: str = "production") -> LoggedPrediction:
    return LoggedPrediction(
        id=f"p{i:04d}",
        at=T0 + timedelta(seconds=i),
        environment=environment,
        model="pets",
        version=version,
        label="cat" if i % 2 else "dog",
        confidence=0.75,
        probabilities={"cat": 0.75, "dog": 0.25} if i % 2 else {"cat": 0.25, "dog": 0.75},
        quality={"brightness": 100.0 + i},
        source="cam-1",
        latency_ms=3.5,
        input_sha256=f"{i:064x}" if i % 3 else None,
        embedding=bytes([i, 0, 0, 60]),
    )


def test_predictions_are_stored_once_and_read_back_whole(db: Database) -> None:
    store = PredictionStore(db)
    batch = [_prediction(i) for i in range(1, 6)]
    store.add_many(batch)
    store.add_many([*batch[2:], _prediction(6)])  # a replayed journal: ids already stored
    stored = store.get("p0003")
    assert stored == batch[2] and stored is not None and stored.ref == "pets@1"
    assert store.get("nope") is None
    window = store.window("production", since=T0, until=T0 + timedelta(hours=1))
    assert [o.prediction.id for o in window] == [f"p{i:04d}" for i in range(1, 7)]
    assert all(o.truth is None for o in window)


def test_window_joins_feedback_and_filters(db: Database) -> None:
    store = PredictionStore(db)
    store.add_many(
        [_prediction(i) for i in range(1, 5)]
        + [_prediction(5, version=2), _prediction(6, environment="staging")]
    )
    store.add_feedback("p0002", "cat", actor="bot", token="abcd1234")
    store.add_feedback("p0004", "dog", actor="bot")
    early = T0 + timedelta(seconds=2)
    window = store.window("production", since=early, until=T0 + timedelta(seconds=5))
    assert [(o.prediction.id, o.truth) for o in window] == [
        ("p0002", "cat"),
        ("p0003", None),
        ("p0004", "dog"),
    ]  # [since, until): p0005 is at until, p0001 before since, p0006 in another environment
    later = T0 + timedelta(hours=1)
    assert [
        o.prediction.id for o in store.window("production", since=T0, until=later, version=2)
    ] == ["p0005"]
    assert store.window("production", since=T0, until=later, model="other") == []


def test_feedback_replaces_is_audited_and_may_arrive_first(db: Database) -> None:
    store = PredictionStore(db)
    first = store.add_feedback("p0002", "dog", actor="bot", token="abcd1234")
    assert store.feedback("p0002") == first  # no prediction stored yet: kept anyway
    second = store.add_feedback("p0002", "cat", actor="ann")
    assert store.feedback("p0002") == second and second.label == "cat"
    assert store.feedback("p0009") is None
    assert _actions(db) == [("bot", "feedback", "p0002"), ("ann", "feedback", "p0002")]
    assert AuditLog(db).entries(limit=2)[1].details == {
        "label": "dog",
        "token": "abcd1234",
        "at": first.at.isoformat(),  # the row's time, which audit verify holds it to
    }
    store.add_many([_prediction(2), _prediction(3), _prediction(4)])
    store.add_feedback("p0003", "cat", actor="ann")  # its input was not kept
    labelled = store.labelled("production")
    assert [(o.prediction.id, o.truth) for o in labelled] == [("p0002", "cat")]
    assert labelled[0].prediction.input_sha256 == f"{2:064x}"


def test_rejections_are_counted_per_environment_and_window(db: Database) -> None:
    store = PredictionStore(db)
    rejections = [
        InputRejection(T0 + timedelta(minutes=i), "production", "api", "not an image")
        for i in range(3)
    ]
    store.add_many([], [*rejections, InputRejection(T0, "staging", "api", "truncated")])
    store.add_many([], rejections[:1])  # no natural key: a second report is a second rejection
    assert store.count_rejections("production", since=T0, until=T0 + timedelta(hours=1)) == 4
    assert (
        store.count_rejections(
            "production", since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=2)
        )
        == 1
    )
    assert store.count_rejections("staging", since=T0, until=T0 + timedelta(hours=1)) == 1
    assert store.count_rejections("dev", since=T0, until=T0 + timedelta(hours=1)) == 0


# -- tokens -----------------------------------------------------------------------------------
def _token(token_id: str, role: str, minutes: int) -> Token:
    digest = hashlib.sha256(token_id.encode()).hexdigest()
    return Token(token_id, f"user-{token_id}", role, digest, T0 + timedelta(minutes=minutes))


def test_tokens_by_hash_revoke_and_the_last_admin(db: Database) -> None:
    records = TokenRecords(db)
    admin = records.add(_token("a0000001", "admin", 0), actor="bootstrap")
    qa = records.add(_token("b0000002", "qa", 1), actor="a0000001")
    assert records.by_hash(qa.hash) == qa
    assert records.by_hash("0" * 64) is None
    with pytest.raises(AuthError, match="last admin token"):
        records.revoke(admin.id, actor="cli")
    assert records.revoke(qa.id, actor="cli") is True
    assert records.revoke(qa.id, actor="cli") is False  # revoked already
    assert records.revoke("ffffffff", actor="cli") is False
    stored = records.by_hash(qa.hash)
    assert stored == replace(qa, revoked=True)
    second = records.add(_token("c0000003", "admin", 2), actor="cli")
    assert records.revoke(admin.id, actor="cli") is True  # another admin is left
    assert [t.id for t in records.all()] == [admin.id, qa.id, second.id]
    assert [t.revoked for t in records.all()] == [True, True, False]
    assert _actions(db) == [
        ("bootstrap", "token.create", "a0000001"),
        ("a0000001", "token.create", "b0000002"),
        ("cli", "token.revoke", "b0000002"),
        ("cli", "token.create", "c0000003"),
        ("cli", "token.revoke", "a0000001"),
    ]


# -- offline scores ---------------------------------------------------------------------------
def _score(uri: str, version: int, label: str | None = "cat") -> Score:
    probabilities = None if label is None else {"cat": 0.9, "dog": 0.1}
    return Score(uri, "ab" * 32, "pets", version, label, 0.9 if label else None, probabilities,
                 None if label else "not an image", T0)  # fmt: skip


def test_score_table_inserts_each_key_once(metadata_url: str) -> None:
    with ScoreTable(metadata_url, "shared_scores") as table:
        table.create()
        table.create()  # exists already: nothing happens
        assert table.add_new([_score("a.jpg", 1), _score("b.jpg", 1, None)]) == 2
        assert table.add_new([_score("a.jpg", 1), _score("a.jpg", 2)]) == 1
        assert table.add_new([]) == 0
        stored = table.for_uri("a.jpg")
        assert [s.version for s in stored] == [2, 1]  # newest model first
        assert stored[1] == _score("a.jpg", 1)
        assert table.for_uri("b.jpg")[0].error == "not an image"
        assert table.for_uri("b.jpg")[0].probabilities is None
        assert stored[0].as_dict()["scored_at"] == T0.isoformat()


def test_score_table_names_are_plain_identifiers(metadata_url: str) -> None:
    with pytest.raises(ConfigError, match="invalid table name"):
        ScoreTable(metadata_url, "scores; DROP TABLE x")
