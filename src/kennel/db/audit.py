"""The hash-chained audit log: every state change appends one entry through ``record``.

Each entry's hash covers its content and the previous entry's hash, so editing or deleting any
row breaks the chain at that point and ``verify`` reports where.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from kennel.db.schema import AuditRow

GENESIS = "0" * 64
_PG_AUDIT_LOCK = 0x6B61756469  # "kaudi"


def _utc_naive(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def entry_hash(
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any],
    prev: str,
) -> str:
    body = json.dumps(
        {
            "seq": seq,
            "at": _utc_naive(at).isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "subject": subject,
            "details": details,
            "prev": prev,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any] | None = None,
) -> int:
    """Append an entry in the caller's transaction (so it commits or rolls back with the change)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
    last = session.execute(
        select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)
    ).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    at = datetime.now(UTC)
    clean = json.loads(json.dumps(details or {}, default=str))
    digest = entry_hash(seq, at, actor, action, subject, clean, prev)
    session.add(
        AuditRow(
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            subject=subject,
            details=clean,
            prev_hash=prev,
            hash=digest,
        )
    )
    session.flush()
    return seq


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    problem: str | None = None


def verify(session: Session) -> Verdict:
    prev = GENESIS
    expected_seq = 1
    checked = 0
    for row in session.scalars(select(AuditRow).order_by(AuditRow.seq)):
        if row.seq != expected_seq:
            return Verdict(False, checked, f"entry {expected_seq} is missing (next is {row.seq})")
        if row.prev_hash != prev:
            return Verdict(False, checked, f"entry {row.seq} does not link to entry {row.seq - 1}")
        digest = entry_hash(
            row.seq, row.at, row.actor, row.action, row.subject, row.details, row.prev_hash
        )
        if digest != row.hash:
            return Verdict(False, checked, f"entry {row.seq} was altered after it was written")
        prev = row.hash
        expected_seq += 1
        checked += 1
    return Verdict(True, checked)


def entries(session: Session, limit: int = 100) -> list[AuditEntry]:
    rows = session.scalars(select(AuditRow).order_by(AuditRow.seq.desc()).limit(limit))
    return [AuditEntry(r.seq, r.at, r.actor, r.action, r.subject, r.details) for r in rows]
