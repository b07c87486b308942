"""Bearer tokens as stored: a hash of each secret, never the secret, with its name and role."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from kennel.db import Database, aware
from kennel.db.audit import record
from kennel.db.audit_state import token_fingerprint
from kennel.db.schema import TokenRow
from kennel.errors import AuthError


@dataclass(frozen=True)
class Token:
    id: str  # the public part of the token
    name: str
    role: str
    hash: str  # sha256 of the whole token
    created_at: datetime
    revoked: bool = False


def _token(row: TokenRow) -> Token:
    return Token(row.id, row.name, row.role, row.hash, aware(row.created_at), row.revoked)


class TokenRecords:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, token: Token, *, actor: str) -> Token:
        """Store ``token`` and audit it as ``token.create`` (its role and name, no secret)."""
        with self.db.session() as s:
            s.add(
                TokenRow(
                    id=token.id,
                    name=token.name,
                    role=token.role,
                    hash=token.hash,
                    created_at=token.created_at,
                    revoked=token.revoked,
                )
            )
            s.flush()
            record(
                s,
                actor=actor,
                action="token.create",
                subject=token.id,
                # the hash's fingerprint: a row whose hash was swapped is told (audit_state)
                details={
                    "role": token.role,
                    "name": token.name,
                    "fingerprint": token_fingerprint(token.hash),
                },
            )
        return token

    def revoke(self, token_id: str, *, actor: str) -> bool:
        """Revoke a live token, audited ``token.revoke``; False when there is none to revoke.
        The last live admin token is refused (AuthError): without one, anyone could create
        tokens again (bootstrap)."""
        with self.db.session() as s:
            row = s.get(TokenRow, token_id)
            if row is None or row.revoked:
                return False
            if row.role == "admin":
                admins = s.scalar(
                    select(func.count())
                    .select_from(TokenRow)
                    .where(TokenRow.role == "admin", TokenRow.revoked.is_(False))
                )
                if admins == 1:
                    raise AuthError(
                        f"{token_id} is the last admin token: create another admin first"
                    )
            row.revoked = True
            record(s, actor=actor, action="token.revoke", subject=token_id, details={})
        return True

    def by_hash(self, digest: str) -> Token | None:
        """The token whose hash is ``digest`` (one indexed query), revoked or not."""
        with self.db.session() as s:
            row = s.scalars(select(TokenRow).where(TokenRow.hash == digest)).first()
            return _token(row) if row is not None else None

    def all(self) -> list[Token]:
        """Every token, oldest first."""
        with self.db.session() as s:
            return [_token(r) for r in s.scalars(select(TokenRow).order_by(TokenRow.created_at))]
