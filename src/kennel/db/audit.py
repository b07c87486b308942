"""The hash-chained audit log: every state change appends one entry through ``record``.

Each entry's hash covers its content and the previous entry's hash, so editing or deleting any
row breaks the chain at that point and ``verify`` reports where. A chain alone cannot show that
its newest entries were deleted, or that it was rewritten and rehashed from some entry on: for
that the anchor keeps each entry's sequence number and hash apart from the database, in a
write-once store (the project's artifact store), published right after the transaction that
appended the entry commits. ``verify`` then checks the newest anchored entry: the database must
still hold it, with the same hash (which pins every entry before it).

The window: an entry whose transaction committed but whose anchor write failed or was cut short
by a crash is not anchored. ``verify`` cannot tell it from a row slipped into the database (and
anchored over by the next real action), so it names the entry and fails; the failed write said
so at once (``AuditAnchor.report``: the CLI prints it; else the log). An admin who has checked the
entry anchors it (``kennel.db.audit_repair``, ``kennel audit anchor SEQ``), itself audited.

Actions recorded so far include ``token.create``, ``token.revoke``, ``feedback``,
``service.reload``, ``auth.login`` and ``auth.login_failed`` (``TokenStore.login``, for the
dashboard), besides the data, model and release actions of the other modules.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, func, or_, select, text
from sqlalchemy.orm import Session

from kennel.db.anchor import AnchorConflict as AnchorConflict
from kennel.db.anchor import AnchorStore as AnchorStore
from kennel.db.anchor import AnchorTaken as AnchorTaken
from kennel.db.anchor import AuditAnchor as AuditAnchor
from kennel.db.audit_rows import AuditEntry as AuditEntry
from kennel.db.audit_rows import StoredEntry, StoredSelect, read, select_stored
from kennel.db.audit_state import mismatch
from kennel.db.schema import AuditRow
from kennel.errors import KennelError

if TYPE_CHECKING:  # engine.py imports this module: Database is only a type here
    from kennel.db.engine import Database

log = logging.getLogger(__name__)
GENESIS = "0" * 64
ANCHOR_KEY = "kennel.audit.anchor"  # Session.info: the AuditAnchor of the session's Database
_PENDING = "kennel.audit.pending"  # Session.info: (seq, hash) appended in this transaction
_LISTENING = "kennel.audit.listening"

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
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
    elif dialect == "sqlite":
        # Take SQLite's write lock before reading the head: a write statement opens the
        # transaction and waits (busy_timeout) for any other writer, so no two appenders can
        # read the same head. It changes nothing.
        session.execute(text("UPDATE audit_log SET seq = seq WHERE seq < 0"))
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
    if session.info.get(ANCHOR_KEY) is not None:
        session.info.setdefault(_PENDING, []).append((seq, digest))
        if not session.info.get(_LISTENING):
            session.info[_LISTENING] = True
            event.listen(session, "after_commit", _publish_anchor)
            event.listen(session, "after_rollback", _forget_pending)
    return seq


def _publish_anchor(session: Session) -> None:
    pending = session.info.pop(_PENDING, [])
    anchor: AuditAnchor | None = session.info.get(ANCHOR_KEY)
    if not pending or anchor is None:
        return
    failed: list[tuple[int, Exception]] = []
    for seq, digest in pending:  # each on its own: the others may still be anchored
        try:
            anchor.publish([(seq, digest)])
        except (KennelError, OSError) as error:  # committed already: report, never undo it
            failed.append((seq, error))
    if not failed:
        return
    first, why = failed[0]
    numbers = ", ".join(str(seq) for seq, _ in failed)
    if not anchor.sequence_numbers():  # none anchored yet: verify names no entry, but 1
        first = 1
    then = f"check it, then `kennel audit anchor {first}`" + (
        " and each entry verify names after it" if len(failed) > 1 or first != failed[0][0] else ""
    )
    if isinstance(why, AnchorConflict):
        advice = "give this project an artifact store of its own"
    elif isinstance(why, AnchorTaken):
        advice = f"`kennel audit verify` names it; remove what holds that name, {then}"
    else:
        advice = f"`kennel audit verify` names it; {then}"
    failure = f"audit: entry {numbers} was recorded but not anchored ({why}); {advice}"
    if anchor.report is not None:
        anchor.report(failure)
    else:
        log.error("%s", failure)


def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def broken_link(row: AuditRow | StoredEntry, expected_seq: int, prev: str) -> str | None:
    """What is wrong with ``row`` as entry ``expected_seq`` after an entry hashed ``prev``:
    missing, not linked to it, or altered since written; None when nothing is."""
    if row.seq != expected_seq:
        return f"entry {expected_seq} is missing (next is {row.seq})"
    if row.prev_hash != prev:
        return f"entry {row.seq} does not link to entry {row.seq - 1}"
    if isinstance(row, StoredEntry) and row.unreadable:
        return f"entry {row.seq} was altered after it was written: {row.unreadable}"
    digest = entry_hash(
        row.seq, row.at, row.actor, row.action, row.subject, row.details, row.prev_hash
    )
    if digest != row.hash:
        return f"entry {row.seq} was altered after it was written"
    return None


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    problem: str | None = None
    anchored: int = 0  # entries covered by the anchor (the newest anchored sequence number)


def verify(
    session: Session,
    anchor: AuditAnchor | None = None,
    *,
    allow_unanchored: bool = False,
    after: int = 0,
    prev: str = GENESIS,
) -> Verdict:
    """Check the chain link by link, and every entry against its anchor. From the first
    anchored entry on, every entry must have an anchor that matches it: an entry without one
    was written into the database directly (or its anchor deleted), a mismatch means the chain
    was rewritten, and anchors beyond the newest entry mean entries were deleted. A chain with
    entries and no anchor at all fails too, unless ``allow_unanchored`` (a log written before
    anchoring existed).

    ``after``/``prev``: check only the entries after entry ``after``, taking that entry (and
    so every one before it) as verified with hash ``prev``; ``checked`` still counts from 1.
    For a caller that verified the whole chain a moment ago and wants the new entries."""
    anchor = anchor or session.info.get(ANCHOR_KEY)
    anchored = anchor.sequence_numbers() if anchor is not None else []
    present = set(anchored)
    first = anchored[0] if anchored else 0
    head = anchored[-1] if anchored else 0
    expected_seq = after + 1
    checked = after
    before = session.scalar(select(func.min(AuditRow.seq)))
    if before is not None and before < 1:  # the chain starts at 1: nothing may lie before it
        return Verdict(
            False,
            checked,
            f"entry {before} lies before the chain's first entry: it was written into the "
            "database directly",
        )
    rows = select_stored().where(AuditRow.seq > after).order_by(AuditRow.seq)
    for row in map(read, session.execute(rows)):
        broken = broken_link(row, expected_seq, prev)
        if broken is not None:
            return Verdict(False, checked, broken)
        if anchor is not None and anchored and row.seq >= first:
            if row.seq not in present:
                return Verdict(
                    False,
                    checked,
                    f"entry {row.seq} has no anchor while the entries around it do: it was "
                    "written into the database directly, its anchor was deleted, or writing "
                    f"its anchor failed (check it, then `kennel audit anchor {row.seq}`)",
                )
            if anchor.hash_of(row.seq) != row.hash:
                return Verdict(
                    False,
                    checked,
                    f"entry {row.seq} does not match its anchor: the chain was rewritten "
                    "from there (or the anchor was damaged)",
                )
        prev = row.hash
        expected_seq += 1
        checked += 1
    if anchor is not None and not anchored and checked and not allow_unanchored:
        return Verdict(
            False,
            checked,
            f"none of the {checked} entries has an anchor in the artifact store: the anchors "
            "were deleted, or the log was written before anchoring (then verify with "
            "--allow-unanchored)",
        )
    if checked < head:
        return Verdict(
            False,
            checked,
            f"entries {checked + 1}..{head} were deleted: the anchor records {head} entries, "
            f"the log holds {checked}",
        )
    if after == 0:  # a whole verification: the rows the deploy path trusts agree with it
        problem = mismatch(session)
        if problem is not None:
            return Verdict(False, checked, problem, len([s for s in anchored if s <= checked]))
    return Verdict(True, checked, anchored=len([s for s in anchored if s <= checked]))


def _entry(row: StoredEntry) -> AuditEntry:
    return AuditEntry(row.seq, row.at, row.actor, row.action, row.subject, row.details)


def _entries(session: Session, query: StoredSelect) -> list[AuditEntry]:
    """The entries ``query`` (over ``select_stored``) finds, an unreadable row among them too."""
    return [_entry(read(r)) for r in session.execute(query)]


def entries(session: Session, limit: int = 100) -> list[AuditEntry]:
    return _entries(session, select_stored().order_by(AuditRow.seq.desc()).limit(limit))


class AuditLog:
    """The audit chain of one Database, for callers outside a store's transaction: each call
    is its own short session."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def append(
        self, *, actor: str, action: str, subject: str, details: dict[str, Any] | None = None
    ) -> int:
        """Append one entry on its own (an event that changes no other row)."""
        with self.db.session() as s:
            return record(s, actor=actor, action=action, subject=subject, details=details)

    def entries(self, limit: int = 100) -> list[AuditEntry]:
        """The newest ``limit`` entries, newest first."""
        with self.db.session() as s:
            return entries(s, limit)

    def head(self) -> int:
        """The newest entry's sequence number (0 for an empty chain)."""
        with self.db.session() as s:
            return int(s.scalar(select(func.max(AuditRow.seq))) or 0)

    def hash_of(self, seq: int) -> str | None:
        """The stored hash of entry ``seq``, None when there is no such entry."""
        with self.db.session() as s:
            return s.scalar(select(AuditRow.hash).where(AuditRow.seq == seq))

    def query(
        self, *, actor: str = "", action: str = "", before: int | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """The newest ``limit`` entries by ``actor`` (exactly) whose action is ``action`` or
        starts with it and a dot (``alert`` matches ``alert.acknowledged``), older than entry
        ``before`` when given (the next page), newest first. Empty filters match all."""
        query = select_stored().order_by(AuditRow.seq.desc()).limit(limit)
        if actor:
            query = query.where(AuditRow.actor == actor)
        if action:
            # LIKE, not a range: a range would follow the database's collation, in which
            # punctuation may not sort as in ASCII
            family = action.rstrip(".")
            escaped = family.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            members = AuditRow.action.like(f"{escaped}.%", escape="\\")
            query = query.where(or_(AuditRow.action == family, members))
        if before is not None:
            query = query.where(AuditRow.seq < before)
        with self.db.session() as s:
            return _entries(s, query)

    def actors(self, limit: int = 200) -> list[str]:
        """Distinct actors, sorted (the first ``limit``)."""
        with self.db.session() as s:
            return list(s.scalars(select(AuditRow.actor).distinct().order_by(AuditRow.actor)
                                  .limit(limit)))  # fmt: skip

    def actions(self, limit: int = 200) -> list[str]:
        """Distinct actions, sorted (the first ``limit``)."""
        with self.db.session() as s:
            return list(s.scalars(select(AuditRow.action).distinct().order_by(AuditRow.action)
                                  .limit(limit)))  # fmt: skip

    def about(self, subject: str, *, separator: str = "@") -> list[AuditEntry]:
        """Every entry about ``subject`` or a part of it, oldest first: ``about("pets")``
        finds ``pets``, ``pets@2`` and ``pets@production``, never ``petshop@1``. The subject
        is matched literally (``%``, ``_`` and ``\\`` are not wildcards) and, unlike SQLite's
        LIKE, with case."""
        part = subject + separator
        query = (
            select_stored()
            .where(
                or_(AuditRow.subject == subject, AuditRow.subject.startswith(part, autoescape=True))
            )
            .order_by(AuditRow.seq)
        )
        with self.db.session() as s:
            found = _entries(s, query)
            return [e for e in found if e.subject == subject or e.subject.startswith(part)]

    def verify(
        self, anchor: AuditAnchor | None = None, *, allow_unanchored: bool = False
    ) -> Verdict:
        """``verify`` over the whole chain (with the Database's anchor unless one is given)."""
        with self.db.session() as s:
            return verify(s, anchor, allow_unanchored=allow_unanchored)
