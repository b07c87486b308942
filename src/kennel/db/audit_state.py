"""The rows the deploy path trusts, checked against what the audit chain recorded as they were
written. The chain and its anchor show that no entry was altered; these rows (QA decisions and
certifications in the order they came, a version's registration, every alias move and where
aliases point, tokens; and the feedback labels and alerts whose values drive the monitor's
rollback and retrain actions) are read by the release policy, rollback and the services, and someone
with write access to the database could change them without touching the chain. Every change
kennel makes to them appends an entry in the same transaction, so each must agree with the
entries about it, in the same order where the policy reads the newest; ``mismatch`` names the
first one that does not. It runs after the chain itself verified, so the entries it reads are
the ones that were written. Rows are read column by column, as stored: one edited into what
its column type cannot read is told, never a traceback."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, select, type_coerce
from sqlalchemy.orm import Session

from kennel.db.audit_rows import StoredEntry, read, select_stored
from kennel.db.schema import (
    AlertRow,
    AliasEventRow,
    ApprovalRow,
    AuditRow,
    CertificationRow,
    FeedbackRow,
    LabelDisputeRow,
    ModelAliasRow,
    ModelVersionRow,
    TokenRow,
)

_ACTIONS = (
    "model.approved",
    "model.rejected",
    "model.certify",
    "model.register",
    "alias.move",
    "token.create",
    "token.revoke",
    "feedback",
    "dataset.dispute",
    "dataset.settle",
)
_ALERT = "alert."  # alert.open, .acknowledged, .resolved, .resolve, .action.<name>
_DIRECTLY = "changed in the database directly"
Entries = dict[str, list[StoredEntry]]


def token_fingerprint(digest: str) -> str:
    """What a ``token.create`` entry keeps of the token's stored hash: enough to tell the row's
    hash was swapped, nothing a reader of the log could use (the hash of a hash of a secret)."""
    return hashlib.sha256(f"kennel-token:{digest}".encode()).hexdigest()[:32]


def mismatch(session: Session) -> str | None:
    """The first governance row that disagrees with the audit log, in words; None if none."""
    wanted = AuditRow.action.in_(_ACTIONS) | AuditRow.action.startswith(_ALERT)
    query = select_stored().where(wanted).order_by(AuditRow.seq)
    by_action: Entries = defaultdict(list)
    for entry in map(read, session.execute(query)):
        by_action[entry.action].append(entry)
    checks: tuple[Callable[[Session, Entries], Iterator[str]], ...] = (
        _approvals,
        _certifications,
        _versions,
        _alias_moves,
        _aliases,
        _tokens,
        _feedback,
        _alerts,
        _disputes,
    )
    for check in checks:
        try:
            problem = next(check(session, by_action), None)
        except (ValueError, TypeError, ArithmeticError) as exc:  # a value no type can read
            what = check.__name__.strip("_").replace("_", " ")
            return f"a row of the {what} cannot be read ({exc}): {_DIRECTLY}"
        if problem is not None:
            return problem
    return None


def _in_order(what: str, held: dict[Any, list[Any]], logged: dict[Any, list[Any]]) -> Iterator[str]:
    """Per key, the rows' values in the order they were written against the entries'."""
    for key in sorted(set(held) | set(logged), key=str):
        rows, entries = held.get(key, []), logged.get(key, [])
        if rows != entries:
            yield (
                f"the {what} of {key} differ from the audit log's ({_words(rows)} against "
                f"{_words(entries)}): {_DIRECTLY}"
            )


def _words(values: list[Any]) -> str:
    return "none" if not values else ", ".join(" ".join(map(str, v)) for v in values)


def _approvals(s: Session, by: Entries) -> Iterator[str]:
    """QA's decisions on each version, in order: the policy reads the newest."""
    logged: dict[str, list[Any]] = defaultdict(list)
    for e in sorted(by["model.approved"] + by["model.rejected"], key=lambda e: e.seq):
        role = e.details.get("role")
        signed = f"{e.actor} ({role})" if role else e.actor
        logged[e.subject].append((e.action.removeprefix("model."), "by", signed,
                                  str(e.details.get("note", ""))))  # fmt: skip
    held: dict[str, list[Any]] = defaultdict(list)
    columns = (ApprovalRow.model, ApprovalRow.version, ApprovalRow.decision, ApprovalRow.actor,
               ApprovalRow.note)  # fmt: skip
    for model, version, decision, actor, note in s.execute(
        select(*columns).order_by(ApprovalRow.id)
    ):
        held[f"{model}@{version}"].append((decision, "by", actor, note))
    yield from _in_order("QA decisions", held, logged)


def _certifications(s: Session, by: Entries) -> Iterator[str]:
    """Each version's certifications per environment, in order: the policy reads the newest."""
    logged: dict[str, list[Any]] = defaultdict(list)
    for e in by["model.certify"]:
        subject = f"{e.subject} in {e.details.get('environment')}"
        logged[subject].append((_verdict(e.details.get("passed")), e.details.get("report")))
    held: dict[str, list[Any]] = defaultdict(list)
    passed_as_stored = type_coerce(CertificationRow.passed, String)
    columns = (CertificationRow.model, CertificationRow.version, CertificationRow.environment,
               passed_as_stored, CertificationRow.report_sha256)  # fmt: skip
    for model, version, env, passed, report in s.execute(
        select(*columns).order_by(CertificationRow.id)
    ):
        held[f"{model}@{version} in {env}"].append((_verdict(passed), report))
    yield from _in_order("certifications", held, logged)


def _truth(value: Any) -> bool | str:
    """A stored or logged flag: SQLite hands back 1/0 (or, edited, anything, said as text)."""
    if value is True or value in (1, "1"):
        return True
    if value is False or value in (0, "0"):
        return False
    return f"unreadable {value!r}"


def _verdict(passed: Any) -> str:
    """A stored or logged pass, as one word."""
    truth = _truth(passed)
    if isinstance(truth, str):
        return truth
    return "passed" if truth else "failed"


def _versions(s: Session, by: Entries) -> Iterator[str]:
    """Each registered version as registered: gates, files, run, data and metrics."""
    registered = {e.subject: e.details for e in by["model.register"]}
    columns = (ModelVersionRow.name, ModelVersionRow.version,
               type_coerce(ModelVersionRow.gates_passed, String),
               type_coerce(ModelVersionRow.files, String), ModelVersionRow.run_id,
               ModelVersionRow.dataset_version,
               type_coerce(ModelVersionRow.metrics, String))  # fmt: skip
    held = set()
    for name, version, gates, files, run, data, metrics in s.execute(select(*columns)):
        subject = f"{name}@{version}"
        held.add(subject)
        logged = registered.get(subject)
        if logged is None:
            yield f"model version {subject} has no model.register entry: it was {_DIRECTLY}"
            continue
        stored = {"gates_passed": _verdict(gates), "files": _json(files), "run": run,
                  "dataset_version": data, "metrics": _json(metrics)}  # fmt: skip
        said = {**logged, "gates_passed": _verdict(logged.get("gates_passed"))}
        for key, value in stored.items():
            # as JSON text: a metric that is NaN equals itself there
            if key in logged and _canon(value) != _canon(said[key]):
                yield (
                    f"model version {subject}'s {key.replace('_', ' ')} differ from those it "
                    f"was registered with: {_DIRECTLY}"
                )
    for subject in sorted(set(registered) - held):
        yield f"model version {subject}, registered in the audit log, was deleted: {_DIRECTLY}"


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _json(text: Any) -> Any:
    """A JSON column's stored text as its value (a database with a JSON type: the value)."""
    if isinstance(text, str | bytes):
        return json.loads(text)
    return text


def _alias_moves(s: Session, by: Entries) -> Iterator[str]:
    """Every alias move, in order: rollback replays them to choose where to go back to."""
    logged: dict[str, list[Any]] = defaultdict(list)
    for e in by["alias.move"]:
        d = e.details
        logged[e.subject].append((d.get("from"), "->", d.get("to"), d.get("kind", "set"),
                                  "by", e.actor, d.get("reason")))  # fmt: skip
    held: dict[str, list[Any]] = defaultdict(list)
    columns = (AliasEventRow.name, AliasEventRow.alias, AliasEventRow.from_version,
               AliasEventRow.to_version, AliasEventRow.kind, AliasEventRow.actor,
               AliasEventRow.reason)  # fmt: skip
    for name, alias, was, to, kind, actor, reason in s.execute(
        select(*columns).order_by(AliasEventRow.id)
    ):
        held[f"{name}@{alias}"].append((was, "->", to, kind, "by", actor, reason))
    yield from _in_order("alias moves", held, logged)


def _aliases(s: Session, by: Entries) -> Iterator[str]:
    """Each alias points where its last recorded move took it."""
    last = {e.subject: e.details.get("to") for e in by["alias.move"]}
    columns = (ModelAliasRow.name, ModelAliasRow.alias, ModelAliasRow.version)
    held = {f"{name}@{alias}": version for name, alias, version in s.execute(select(*columns))}
    for subject in sorted(set(last) | set(held)):
        logged, now = last.get(subject), held.get(subject)
        if logged != now:
            where = f"version {now}" if now is not None else "no version"
            said = f"version {logged}" if logged is not None else "none"
            yield (
                f"alias {subject} points to {where}, its last move in the audit log to {said}: "
                f"{_DIRECTLY}"
            )


def _tokens(s: Session, by: Entries) -> Iterator[str]:
    """Each token: made as it is now (role, name, secret's hash), revoked when it was."""
    made = {e.subject: e.details for e in by["token.create"]}
    revoked = {e.subject for e in by["token.revoke"]}
    columns = (TokenRow.id, TokenRow.name, TokenRow.role, TokenRow.hash,
               type_coerce(TokenRow.revoked, String))  # fmt: skip
    for token_id, name, role, digest, is_revoked in s.execute(
        select(*columns).order_by(TokenRow.id)
    ):
        logged = made.get(token_id)
        if logged is None:
            yield f"token {token_id} ({role}) has no token.create entry: it was {_DIRECTLY}"
            continue
        if logged.get("role") != role or logged.get("name") != name:
            yield (
                f"token {token_id} is {name!r} ({role}), the audit log made it "
                f"{logged.get('name')!r} ({logged.get('role')}): {_DIRECTLY}"
            )
        fingerprint = logged.get("fingerprint")
        if fingerprint is not None and fingerprint != token_fingerprint(str(digest)):
            yield f"token {token_id}'s secret was swapped in the database directly"
        if token_id in revoked and _truth(is_revoked) is not True:
            yield f"token {token_id} was revoked, and made live again in the database directly"


def _feedback(s: Session, by: Entries) -> Iterator[str]:
    """Each prediction's true label and who gave it, as the newest entry that changed it said
    (a label sent again, ``unchanged``, keeps the first sender): the monitor's measured
    accuracy, and so its rollback and retrain actions, and a retrain's data read them."""
    logged: dict[str, tuple[Any, Any]] = {}
    when: dict[str, datetime] = {}  # the time of the entry that set it: the row's, near enough
    for e in by["feedback"]:
        if not e.details.get("unchanged"):
            logged[e.subject], when[e.subject] = (e.details.get("label"), e.actor), e.at
    columns = (FeedbackRow.prediction_id, FeedbackRow.label, FeedbackRow.actor, FeedbackRow.at)
    held, at = {}, {}
    for pid, label, actor, stored_at in s.execute(select(*columns)):
        held[pid], at[pid] = (label, actor), stored_at
    for pid in sorted(set(held) | set(logged)):
        row, entry = held.get(pid), logged.get(pid)
        if row == entry and not _apart(at[pid], when[pid]):
            continue
        if row == entry:  # a label "since the champion" decides whether a retrain may run
            yield (
                f"feedback for prediction {pid} is dated {at[pid]}, its entry {when[pid]}: "
                f"{_DIRECTLY}"
            )
            continue
        if entry is None:
            yield f"feedback for prediction {pid} has no feedback entry: it was {_DIRECTLY}"
        elif row is None:
            yield f"feedback for prediction {pid}, in the audit log, was deleted: {_DIRECTLY}"
        else:
            yield (
                f"feedback for prediction {pid} is {row[0]!r} by {row[1]}, the audit log's "
                f"{entry[0]!r} by {entry[1]}: {_DIRECTLY}"
            )


def _alerts(s: Session, by: Entries) -> Iterator[str]:
    """Each alert as its entries left it: its rule and subject, severity and message as
    opened, its state after the newest change and each action's newest outcome (what stops a
    rule's actions from running again, and what a compliance report shows)."""
    logged: dict[int, dict[str, Any]] = {}
    entries = sorted((e for a, es in by.items() if a.startswith(_ALERT) for e in es),
                     key=lambda e: e.seq)  # fmt: skip
    for e in entries:
        ident = e.details.get("id")
        if not isinstance(ident, int):
            continue
        if e.action == "alert.open":
            logged[ident] = {"subject": e.subject, "severity": e.details.get("severity"),
                             "message": e.details.get("message"), "state": "open",
                             "actions": {}, "first_at": e.at}  # fmt: skip
            # what the entry says of them since it has (a retrain's window, compliance's runs)
            logged[ident].update({k: e.details[k] for k in _OPENED if k in e.details})
        elif ident not in logged:
            continue  # opened before the log said which alert: nothing to hold it to
        elif e.action.startswith(_ALERT + "action."):
            logged[ident]["actions"][e.action.removeprefix(_ALERT + "action.")] = e.details.get(
                "outcome"
            )
        elif e.action in ("alert.acknowledged", "alert.resolved", "alert.resolve"):
            logged[ident]["state"] = (
                "acknowledged" if e.action == "alert.acknowledged" else ("resolved")
            )
    columns = (AlertRow.id, AlertRow.rule, AlertRow.subject, AlertRow.severity,
               AlertRow.message, AlertRow.state, type_coerce(AlertRow.actions, String),
               AlertRow.first_at, AlertRow.metric, AlertRow.threshold,
               AlertRow.run_id)  # fmt: skip
    held = set()
    for (ident, rule, subject, severity, message, state, actions, first_at, metric, threshold,
         run_id) in s.execute(select(*columns).order_by(AlertRow.id)):  # fmt: skip
        held.add(ident)
        said = logged.get(ident)
        if said is None:
            yield f"alert {ident} ({rule}) has no alert.open entry: it was {_DIRECTLY}"
            continue
        if _apart(first_at, said["first_at"]):
            yield (
                f"alert {ident} was first seen {first_at}, its alert.open entry "
                f"{said['first_at']}: {_DIRECTLY}"
            )
        stored = {"subject": f"{rule}:{subject}", "severity": severity, "message": message,
                  "state": state, "actions": _json(actions), "metric": metric,
                  "threshold": threshold, "run_id": run_id}  # fmt: skip
        for key, value in stored.items():
            if key in said and _canon(value) != _canon(said[key]):
                yield (
                    f"alert {ident}'s {key} is {_shown(value)}, the audit log's "
                    f"{_shown(said[key])}: {_DIRECTLY}"
                )
    for ident in sorted(set(logged) - held):
        yield f"alert {ident}, opened in the audit log, was deleted: {_DIRECTLY}"


_OPENED = ("metric", "threshold", "run_id")  # what an alert.open entry says besides the id
NEAR = timedelta(seconds=5)  # a row's time and its entry's, written in one transaction


def _apart(stored: Any, logged: datetime) -> bool:
    """Whether a row's time is not its entry's (each taken in the same transaction)."""
    if not isinstance(stored, datetime):
        return True
    utc = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in (stored, logged)]  # SQLite's: naive
    return abs(utc[0] - utc[1]) > NEAR


def _shown(value: Any) -> str:
    text = _canon(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _disputes(s: Session, by: Entries) -> Iterator[str]:
    """Each label dispute as recorded (the labels its content was offered under) and settled
    (the label and who chose it): what keeps a picture out of a dataset, or lets it in."""
    offered = {e.subject: e.details.get("labels") for e in by["dataset.dispute"]}
    settled = {e.subject: (e.details.get("label"), e.actor) for e in by["dataset.settle"]}
    columns = (LabelDisputeRow.dataset, LabelDisputeRow.sha256,
               type_coerce(LabelDisputeRow.labels, String), LabelDisputeRow.settled_label,
               LabelDisputeRow.settled_by)  # fmt: skip
    held = set()
    for dataset, sha, labels, label, by_whom in s.execute(select(*columns)):
        subject = f"{dataset}:{sha}"
        held.add(subject)
        if subject not in offered:
            yield f"label dispute {subject} has no dataset.dispute entry: it was {_DIRECTLY}"
        elif _canon(_json(labels)) != _canon(offered[subject]):
            yield f"label dispute {subject}'s labels differ from the audit log's: {_DIRECTLY}"
        elif (label, by_whom) != settled.get(subject, (None, None)):
            said = settled.get(subject)
            logged = f"{said[0]!r} by {said[1]}" if said else "none"
            yield (
                f"label dispute {subject} is settled as {label!r} by {by_whom}, the audit "
                f"log's {logged}: {_DIRECTLY}"
            )
    for subject in sorted(set(offered) - held):
        yield f"label dispute {subject}, recorded in the audit log, was deleted: {_DIRECTLY}"
