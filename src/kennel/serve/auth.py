"""Role-bearing bearer tokens. Only a hash of each token is stored; the plain token is shown
once at creation. Roles are ordered: viewer < operator < qa < admin."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from kennel.db import Database
from kennel.db.audit import record
from kennel.db.schema import TokenRow
from kennel.errors import ConfigError

ROLES = ("viewer", "operator", "qa", "admin")
# Which roles may perform each protected action (the moves are checked by
# kennel.deploy.policy.PolicyGate, the HTTP routes by the service).
PERMISSIONS: dict[str, frozenset[str]] = {
    "feedback": frozenset({"operator", "qa", "admin"}),
    "reload": frozenset({"operator", "admin"}),
    "approve": frozenset({"qa", "admin"}),
    "deploy": frozenset({"operator", "qa", "admin"}),
    "release": frozenset({"operator", "qa", "admin"}),
    "rollback": frozenset({"operator", "qa", "admin"}),
    "alias": frozenset({"operator", "admin"}),
    "tokens": frozenset({"admin"}),
}
_CACHE_S = 30.0


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Identity:
    """Who acts: a token's holder, the local operator of a single-user project, or a named
    system actor (an alert rule, continuous deployment)."""

    token_id: str
    name: str
    role: str

    def may(self, action: str) -> bool:
        return self.role in PERMISSIONS.get(action, frozenset())

    @staticmethod
    def roles_for(action: str) -> str:
        return " or ".join(r for r in ROLES if r in PERMISSIONS.get(action, frozenset()))

    @classmethod
    def system(cls, name: str, role: str = "operator") -> Identity:
        """kennel itself acting on a rule (alerts, continuous deployment); audited by name."""
        return cls("system", name, role)


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, Identity | None]] = {}

    def create(self, role: str, name: str, *, actor: str = "cli") -> tuple[str, Identity]:
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
        token_id = secrets.token_hex(4)
        token = f"kn_{token_id}_{secrets.token_urlsafe(24)}"
        with self.db.session() as s:
            s.add(
                TokenRow(
                    id=token_id,
                    name=name,
                    role=role,
                    hash=_digest(token),
                    created_at=datetime.now(UTC),
                    revoked=False,
                )
            )
            s.flush()
            record(
                s,
                actor=actor,
                action="token.create",
                subject=token_id,
                details={"role": role, "name": name},
            )
        return token, Identity(token_id, name, role)

    def revoke(self, token_id: str, *, actor: str = "cli") -> bool:
        with self.db.session() as s:
            row = s.get(TokenRow, token_id)
            if row is None or row.revoked:
                return False
            row.revoked = True
            record(s, actor=actor, action="token.revoke", subject=token_id, details={})
        self._cache.clear()
        return True

    def identify(self, token: str | None) -> Identity | None:
        """The identity behind a presented token, or None (unknown, revoked, malformed)."""
        if not token or not token.startswith("kn_"):
            return None
        digest = _digest(token)
        cached = self._cache.get(digest)
        if cached is not None and time.monotonic() - cached[0] < _CACHE_S:
            return cached[1]
        with self.db.session() as s:
            row = s.scalars(select(TokenRow).where(TokenRow.hash == digest)).first()
            identity = None
            if row is not None and not row.revoked and hmac.compare_digest(row.hash, digest):
                identity = Identity(row.id, row.name, row.role)
        self._cache[digest] = (time.monotonic(), identity)
        return identity

    def all(self) -> list[dict[str, object]]:
        with self.db.session() as s:
            return [
                {
                    "id": r.id,
                    "name": r.name,
                    "role": r.role,
                    "revoked": r.revoked,
                    "created_at": r.created_at.isoformat(),
                }
                for r in s.scalars(select(TokenRow).order_by(TokenRow.created_at))
            ]
