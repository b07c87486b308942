"""Role-bearing bearer tokens. Only a hash of each token is stored; the plain token is shown
once at creation. Roles are ordered: viewer < operator < qa < admin.

Nothing is cached: every presented token is looked up (one indexed query), so a revocation
takes effect at the next request in every process on the database, and a flood of made-up
tokens leaves nothing behind in memory. The routes that take a token write to the database
anyway, so the lookup is not what bounds their throughput."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from kennel.db import Database
from kennel.db.audit import AuditLog
from kennel.db.tokens import Token, TokenRecords
from kennel.errors import ConfigError

ROLES = ("viewer", "operator", "qa", "admin")
# names kennel itself acts under: a token may not pass for an alert rule or the local operator
# ASCII only, so no letters from other scripts; no spaces or colons, so no `local:` or
# `bootstrap:`; and compared by their look (``_skeleton``), so no `kenneI` (a capital i) either
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
_RESERVED = ("system", "kennel", "continuous-deployment", "local", "bootstrap")
_ALIKE = str.maketrans("i1|03457", "llloeast", "-_.@:")  # i, 1, | read as l; 0 as o; ...


def _skeleton(name: str) -> str:
    """``name`` as it reads: letters and digits easily taken for one another made the same,
    separators left out (``ContinuousDeployment`` reads as ``continuous-deployment``). Over
    broad on purpose: a ``kennelly`` chooses another name."""
    return name.lower().replace("rn", "m").translate(_ALIKE)


def _reserved(name: str) -> bool:
    return any(_skeleton(name).startswith(_skeleton(word)) for word in _RESERVED)


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
    "alerts": frozenset({"operator", "qa", "admin"}),
    "tokens": frozenset({"admin"}),
    "audit": frozenset({"admin"}),  # anchoring an entry an anchor write left out
}
# What ``create`` makes; anything else is refused without a query.
_SHAPE = re.compile(r"^kn_[0-9a-f]{8}_[A-Za-z0-9_-]{32}\Z")


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
        self.records = TokenRecords(db)
        self.audit = AuditLog(db)

    def create(self, role: str, name: str, *, actor: str = "cli") -> tuple[str, Identity]:
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
        if not _NAME.match(name) or _reserved(name):
            raise ConfigError(
                f"token name {name!r}: use 1-64 ASCII letters, digits and . _ @ - (no spaces), "
                "not starting like kennel's own actors (system, kennel, continuous-deployment, "
                "local, bootstrap)"
            )
        token_id = secrets.token_hex(4)
        token = f"kn_{token_id}_{secrets.token_urlsafe(24)}"
        self.records.add(
            Token(token_id, name, role, _digest(token), datetime.now(UTC)), actor=actor
        )
        return token, Identity(token_id, name, role)

    def revoke(self, token_id: str, *, actor: str = "cli") -> bool:
        return self.records.revoke(token_id, actor=actor)

    def identify(self, token: str | None) -> Identity | None:
        """The identity behind a presented token, or None (unknown, revoked, malformed)."""
        if not token or not _SHAPE.match(token):
            return None
        digest = _digest(token)
        stored = self.records.by_hash(digest)
        if stored is None or stored.revoked or not hmac.compare_digest(stored.hash, digest):
            return None
        return Identity(stored.id, stored.name, stored.role)

    def login(self, token: str | None, *, via: str) -> Identity | None:
        """Identify ``token`` for a sign-in (the dashboard's) and audit the attempt either way:
        ``auth.login`` by the token's name, or ``auth.login_failed`` (never the secret; only
        the public id part of a well-formed token)."""
        who = self.identify(token)
        if who is not None:
            role = {"via": via, "role": who.role}
            self.audit.append(
                actor=who.name, action="auth.login", subject=who.token_id, details=role
            )
        else:
            claimed = token[3:11] if token and _SHAPE.match(token) else None
            self.audit.append(
                actor="anonymous",
                action="auth.login_failed",
                subject=via,
                details={"token": claimed},
            )
        return who

    def all(self) -> list[dict[str, object]]:
        return [
            {
                "id": t.id,
                "name": t.name,
                "role": t.role,
                "revoked": t.revoked,
                "created_at": t.created_at.isoformat(),
            }
            for t in self.records.all()
        ]
