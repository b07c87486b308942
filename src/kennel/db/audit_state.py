"""The rows the deploy path trusts, checked against what the audit chain recorded as they were
written. The chain and its anchor show that no entry was altered; these rows (QA decisions,
certifications, a version's gate result and files, tokens' roles, where aliases point) are
read by the release policy and the services, and someone with write access to the database
could change them without touching the chain. Every change kennel makes to them appends an
entry in the same transaction, so each must agree with the entries about it; ``mismatch``
names the first one that does not. It runs after the chain itself verified, so the entries
it reads are the ones that were written."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kennel.db.audit_rows import StoredEntry, read, select_stored
from kennel.db.schema import (
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
)
_DIRECTLY = "written into the database directly"


def token_fingerprint(digest: str) -> str:
    """What a ``token.create`` entry keeps of the token's stored hash: enough to tell the row's
    hash was swapped, nothing a reader of the log could use (the hash of a hash of a secret)."""
    return hashlib.sha256(f"kennel-token:{digest}".encode()).hexdigest()[:32]


def mismatch(session: Session) -> str | None:
    """The first governance row that disagrees with the audit log, in words; None if none."""
    entries = [
        read(r)
        for r in session.execute(
            select_stored().where(AuditRow.action.in_(_ACTIONS)).order_by(AuditRow.seq)
        )
    ]
    by_action: dict[str, list[StoredEntry]] = {}
    for entry in entries:
        by_action.setdefault(entry.action, []).append(entry)
    checks = (_approvals, _certifications, _versions, _aliases, _tokens)
    for check in checks:
        problem = next(check(session, by_action), None)
        if problem is not None:
            return problem
    return None


def _approvals(s: Session, by: dict[str, list[StoredEntry]]) -> Iterator[str]:
    """QA's decisions: the same ones, by the same people, with the same notes, as many times."""
    logged = Counter(
        (e.subject, e.action.removeprefix("model."), _signed(e), str(e.details.get("note", "")))
        for e in by.get("model.approved", []) + by.get("model.rejected", [])
    )
    held = Counter(
        (f"{r.model}@{r.version}", r.decision, r.actor, r.note)
        for r in s.scalars(select(ApprovalRow))
    )
    for key in sorted((held - logged).keys()):
        yield f"the approvals table holds a QA decision the audit log does not: {_words(key)}"
    for key in sorted((logged - held).keys()):
        yield f"a QA decision in the audit log is missing from the approvals table: {_words(key)}"


def _signed(entry: StoredEntry) -> str:
    role = entry.details.get("role")
    return f"{entry.actor} ({role})" if role else entry.actor


def _words(key: tuple[str, str, str, str]) -> str:
    subject, decision, actor, _note = key
    return f"{subject} {decision} by {actor} ({_DIRECTLY}, or deleted)"


def _certifications(s: Session, by: dict[str, list[StoredEntry]]) -> Iterator[str]:
    """Certifications: the same verdicts on the same versions in the same environments."""
    logged = Counter(
        (e.subject, str(e.details.get("environment")), bool(e.details.get("passed")))
        for e in by.get("model.certify", [])
    )
    held = Counter(
        (f"{r.model}@{r.version}", r.environment, bool(r.passed))
        for r in s.scalars(select(CertificationRow))
    )
    for subject, env, passed in sorted((held - logged).keys()):
        verdict = "passed" if passed else "failed"
        yield (
            f"the certifications table holds a certification of {subject} in {env} "
            f"({verdict}) that the audit log does not: it was {_DIRECTLY}"
        )
    for subject, env, passed in sorted((logged - held).keys()):
        verdict = "passed" if passed else "failed"
        yield (
            f"the certification of {subject} in {env} ({verdict}) that the audit log records "
            "is missing from the certifications table, or was changed"
        )


def _versions(s: Session, by: dict[str, list[StoredEntry]]) -> Iterator[str]:
    """Each registered version: its gate result and its files as registered."""
    registered = {e.subject: e.details for e in by.get("model.register", [])}
    for row in s.scalars(select(ModelVersionRow).order_by(ModelVersionRow.name,
                                                          ModelVersionRow.version)):  # fmt: skip
        subject = f"{row.name}@{row.version}"
        logged = registered.get(subject)
        if logged is None:
            yield f"model version {subject} has no model.register entry: it was {_DIRECTLY}"
            continue
        if "gates_passed" in logged and bool(logged["gates_passed"]) != bool(row.gates_passed):
            said = "passed" if logged["gates_passed"] else "failed"
            yield (
                f"model version {subject} is marked gates "
                f"{'passed' if row.gates_passed else 'failed'}, the audit log says {said}: "
                f"changed in the database directly"
            )
        if "files" in logged and _files(logged["files"]) != _files(row.files):
            yield (
                f"model version {subject}'s files differ from those it was registered with: "
                "changed in the database directly"
            )


def _files(files: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def _aliases(s: Session, by: dict[str, list[StoredEntry]]) -> Iterator[str]:
    """Each alias points where its last recorded move took it."""
    last: dict[str, Any] = {}
    for e in by.get("alias.move", []):
        last[e.subject] = e.details.get("to")
    held = {f"{r.name}@{r.alias}": r.version for r in s.scalars(select(ModelAliasRow))}
    for subject in sorted(set(last) | set(held)):
        logged, now = last.get(subject), held.get(subject)
        if logged != now:
            where = f"version {now}" if now is not None else "no version"
            said = f"version {logged}" if logged is not None else "none"
            yield (
                f"alias {subject} points to {where}, its last move in the audit log to {said}: "
                f"changed in the database directly"
            )


def _tokens(s: Session, by: dict[str, list[StoredEntry]]) -> Iterator[str]:
    """Each token: made as it is now (role, name, secret's hash), revoked when it was."""
    made = {e.subject: e.details for e in by.get("token.create", [])}
    revoked = {e.subject for e in by.get("token.revoke", [])}
    for row in s.scalars(select(TokenRow).order_by(TokenRow.id)):
        logged = made.get(row.id)
        if logged is None:
            yield f"token {row.id} ({row.role}) has no token.create entry: it was {_DIRECTLY}"
            continue
        if logged.get("role") != row.role or logged.get("name") != row.name:
            yield (
                f"token {row.id} is {row.name!r} ({row.role}), the audit log made it "
                f"{logged.get('name')!r} ({logged.get('role')}): changed in the database directly"
            )
        fingerprint = logged.get("fingerprint")
        if fingerprint is not None and fingerprint != token_fingerprint(row.hash):
            yield f"token {row.id}'s secret was swapped in the database directly"
        if row.id in revoked and not row.revoked:
            yield f"token {row.id} was revoked, and made live again in the database directly"
