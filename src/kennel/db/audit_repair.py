"""Mending the audit anchor by hand: an entry whose anchor write failed (or a crash cut short)
cannot be told from a row slipped into the database, so ``verify`` names it until an admin who
has checked it anchors it here (``kennel audit anchor SEQ``), itself an audited act."""

from __future__ import annotations

from sqlalchemy.orm import Session

from kennel.db.audit import ANCHOR_KEY, GENESIS, AnchorTaken, AuditAnchor, broken_link, record
from kennel.db.audit_rows import read, select_stored
from kennel.db.schema import AuditRow
from kennel.errors import NotFoundError, StateError


def anchor_entry(session: Session, seq: int, *, actor: str) -> str:
    """Anchor entry ``seq``, which an anchor write left out (an admin has checked it): the
    chain up to it must be intact (checked against the anchors before it), and the act is
    recorded (``audit.anchored``), anchored in turn. Returns the entry's hash."""
    anchor: AuditAnchor | None = session.info.get(ANCHOR_KEY)
    if anchor is None:
        raise StateError("this project's audit log has no anchor store")
    found = session.execute(select_stored().where(AuditRow.seq == seq)).first()
    row = read(found) if found is not None else None
    if row is None:
        raise NotFoundError(f"no audit entry {seq}")
    anchored = anchor.sequence_numbers()
    if seq in set(anchored):
        if anchor.hash_of(seq) == row.hash:
            raise StateError(f"entry {seq} is anchored already")
        raise StateError(
            f"{anchor.name(seq)} in the artifact store does not hold this entry's anchor (it "
            "cannot be read as one, or holds another hash): inspect it; if it is no anchor of "
            "this log, remove it and run this again"
        )
    if not anchored and seq != 1:
        # no anchor at all (the first anchor writes failed): verify asks for them from entry 1
        raise StateError(f"no entry is anchored yet: anchor entry 1 first, then {seq}")
    if anchored and seq < anchored[0]:
        # verify takes the entries before the first anchor as a log from before anchoring:
        # anchoring one of them would make it demand anchors of all that follow
        raise StateError(
            f"entry {seq} comes before the anchor (its first is entry {anchored[0]}): verify "
            "does not ask for an anchor there"
        )
    upto = _verified_up_to(session, anchor, seq)
    if upto is not None:
        raise StateError(f"the chain before entry {seq} is broken: {upto}")
    try:
        anchor.publish([(seq, row.hash)])
    except AnchorTaken as exc:
        raise StateError(
            f"{exc}: inspect it; if it is no anchor of this log, remove it and run this again"
        ) from exc
    record(session, actor=actor, action="audit.anchored", subject=str(seq),
           details={"hash": row.hash})  # fmt: skip
    return row.hash


def _verified_up_to(session: Session, anchor: AuditAnchor, seq: int) -> str | None:
    """Why the chain up to entry ``seq`` does not verify (links, hashes and the anchors of
    the entries before it), or None when it does."""
    present = set(anchor.sequence_numbers())
    prev = GENESIS
    rows = select_stored().where(AuditRow.seq <= seq).order_by(AuditRow.seq)
    for expected, row in enumerate(map(read, session.execute(rows)), start=1):
        broken = broken_link(row, expected, prev)
        if broken is not None:
            return broken
        if row.seq < seq and row.seq in present and anchor.hash_of(row.seq) != row.hash:
            return f"entry {row.seq} does not match its anchor"
        prev = row.hash
    return None
