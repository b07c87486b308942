"""The rows the deploy path trusts, checked against what the audit chain recorded as they were
written. The chain and its anchor show that no entry was altered; these rows (QA decisions and
certifications in the order they came, a version's registration, every alias move and where
aliases point, tokens; and, in ``kennel.db.audit_watch``, feedback, alerts and label
disputes) are read by the release policy, rollback, the services, the monitor and ingests, and
someone with write access to the database could change them without touching the chain. Every change
kennel makes to them appends an entry in the same transaction, so each must agree with the
entries about it, in the same order where the policy reads the newest; ``mismatch`` names the
first one that does not. It runs after the chain itself verified, so the entries it reads are
the ones that were written. Rows are read column by column, as stored: one edited into what
its column type cannot read is told, never a traceback."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import String, select, type_coerce
from sqlalchemy.orm import Session

from kennel.db.audit_rows import DIRECTLY, Entries, as_json, canon, read, select_stored
from kennel.db.audit_watch import ALERT, alerts, disputes, feedback
from kennel.db.schema import (
    AliasEventRow,
    ApprovalRow,
    AuditRow,
    CertificationRow,
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


def token_fingerprint(digest: str) -> str:
    """What a ``token.create`` entry keeps of the token's stored hash: enough to tell the row's
    hash was swapped, nothing a reader of the log could use (the hash of a hash of a secret)."""
    return hashlib.sha256(f"kennel-token:{digest}".encode()).hexdigest()[:32]


def mismatch(session: Session) -> str | None:
    """The first governance row that disagrees with the audit log, in words; None if none."""
    wanted = AuditRow.action.in_(_ACTIONS) | AuditRow.action.startswith(ALERT)
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
        feedback,
        alerts,
        disputes,
    )
    for check in checks:
        try:
            problem = next(check(session, by_action), None)
        except (ValueError, TypeError, ArithmeticError) as exc:  # a value no type can read
            what = check.__name__.strip("_").replace("_", " ")
            return f"a row of the {what} cannot be read ({exc}): {DIRECTLY}"
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
                f"{_words(entries)}): {DIRECTLY}"
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
            yield f"model version {subject} has no model.register entry: it was {DIRECTLY}"
            continue
        stored = {"gates_passed": _verdict(gates), "files": as_json(files), "run": run,
                  "dataset_version": data, "metrics": as_json(metrics)}  # fmt: skip
        said = {**logged, "gates_passed": _verdict(logged.get("gates_passed"))}
        for key, value in stored.items():
            # as JSON text: a metric that is NaN equals itself there
            if key in logged and canon(value) != canon(said[key]):
                yield (
                    f"model version {subject}'s {key.replace('_', ' ')} differ from those it "
                    f"was registered with: {DIRECTLY}"
                )
    for subject in sorted(set(registered) - held):
        yield f"model version {subject}, registered in the audit log, was deleted: {DIRECTLY}"


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
                f"{DIRECTLY}"
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
            yield f"token {token_id} ({role}) has no token.create entry: it was {DIRECTLY}"
            continue
        if logged.get("role") != role or logged.get("name") != name:
            yield (
                f"token {token_id} is {name!r} ({role}), the audit log made it "
                f"{logged.get('name')!r} ({logged.get('role')}): {DIRECTLY}"
            )
        fingerprint = logged.get("fingerprint")
        if fingerprint is not None and fingerprint != token_fingerprint(str(digest)):
            yield f"token {token_id}'s secret was swapped in the database directly"
        if token_id in revoked and _truth(is_revoked) is not True:
            yield f"token {token_id} was revoked, and made live again in the database directly"
