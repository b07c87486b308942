"""Signing in to the dashboard with a role token, and keeping forged requests out.

- The browser holds only a random session id (an HttpOnly, SameSite=Strict cookie, Secure and
  ``__Host-`` prefixed over https). The token lives in this process's memory, never in a cookie,
  a page or a log, and is looked up again on every request (``TokenStore.identify``), so a
  revoked token signs its sessions out at their next request.
- Every state-changing form carries the session's CSRF token, compared in constant time; the
  sign-in form carries one derived from a pre-session nonce cookie. Requests whose ``Origin``
  (or ``Sec-Fetch-Site``) shows another site are refused before any of that.
- Sessions end after ``idle_s`` without a request or ``max_age_s`` in all. One token keeps at
  most ``per_token`` sessions (its own oldest goes first), and at most ``capacity`` are kept in
  all (the oldest of the token holding the most goes first): signing in again and again with
  one token can never sign anybody else out. They live in one process: restarting the dashboard, or
  running several replicas, signs people out (see docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from kennel.errors import AuthError

LOGIN_NONCE = "kennel_login"


@dataclass
class Session:
    id: str
    token: str  # the role token itself: server memory only
    csrf: str
    created: float
    seen: float = field(default=0.0)
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) for the next page


class SessionStore:
    def __init__(
        self,
        *,
        idle_s: float = 8 * 3600,
        max_age_s: float = 24 * 3600,
        capacity: int = 1000,
        per_token: int = 20,
    ) -> None:
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.capacity = capacity
        self.per_token = per_token
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)  # signs the sign-in form's CSRF token

    def create(self, token: str) -> Session:
        now = time.monotonic()
        session = Session(secrets.token_urlsafe(32), token, secrets.token_urlsafe(32), now, now)
        with self._lock:
            own = [s for s in self._sessions.values() if s.token == token]
            while own and len(own) >= self.per_token:
                oldest = min(own, key=lambda s: s.seen)
                own.remove(oldest)
                del self._sessions[oldest.id]
            while len(self._sessions) >= self.capacity:
                self._evict_from_the_largest()
            self._sessions[session.id] = session
        return session

    def _evict_from_the_largest(self) -> None:
        held: dict[str, list[Session]] = {}
        for s in self._sessions.values():
            held.setdefault(s.token, []).append(s)
        most = max(held.values(), key=len)
        del self._sessions[min(most, key=lambda s: s.seen).id]

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.seen > self.idle_s or now - session.created > self.max_age_s:
                del self._sessions[session_id]
                return None
            session.seen = now
            return session

    def drop(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def drop_token(self, token: str) -> None:
        """End every session signed in with ``token`` (it was found revoked)."""
        with self._lock:
            for sid in [s.id for s in self._sessions.values() if s.token == token]:
                del self._sessions[sid]

    # -- the sign-in form's CSRF token: bound to a nonce cookie, no server state -------------
    def login_csrf(self, nonce: str) -> str:
        return hmac.new(self._key, f"login:{nonce}".encode(), hashlib.sha256).hexdigest()

    def check_login_csrf(self, nonce: str | None, presented: str | None) -> None:
        if not nonce or not presented:
            raise AuthError("the sign-in form expired: reload the page and try again")
        if not hmac.compare_digest(self.login_csrf(nonce), presented):
            raise AuthError("the sign-in form expired: reload the page and try again")


class LoginThrottle:
    """At most ``limit`` failed sign-ins per client address in ``window_s``: a token cannot be
    guessed anyway, but every failure is an audit entry, and a flood of them would bury the
    chain. Addresses are forgotten when their window passes (at most ``capacity`` kept). The
    same class, keyed by token id, bounds successful sign-ins per token (each is audited too)."""

    def __init__(self, limit: int = 10, window_s: float = 60.0, capacity: int = 10000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.capacity = capacity
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(address, []) if now - t < self.window_s]
        if kept:
            self._failures[address] = kept
        else:
            self._failures.pop(address, None)
        return kept

    def allowed(self, address: str) -> bool:
        with self._lock:
            return len(self._recent(address, time.monotonic())) < self.limit

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) >= self.capacity:
                for known in list(self._failures):
                    self._recent(known, now)
                if len(self._failures) >= self.capacity:
                    self._failures.pop(next(iter(self._failures)))
            self._failures[address] = [*self._recent(address, now), now]


def check_csrf(session: Session, presented: str | None) -> None:
    if not presented or not hmac.compare_digest(session.csrf.encode(), presented.encode()):
        raise AuthError("the form's CSRF token is missing or wrong: reload the page and retry")


def same_origin(request: Request, also: tuple[str, ...] = ()) -> bool:
    """False when the browser says the request comes from another site. A request without
    ``Origin`` (not a browser's form post) still needs its CSRF token. ``also``: the public
    origins a TLS proxy serves the dashboard under (``kennel ui --public-origin``)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    own = hmac.compare_digest(origin.encode(), f"{request.url.scheme}://{host}".encode())
    return own or any(hmac.compare_digest(origin.lower().encode(), o.encode()) for o in also)


def cookie_name(request: Request) -> str:
    # __Host-: the browser refuses it unless Secure, Path=/ and no Domain (no subdomain tricks)
    return "__Host-kennel_session" if request.url.scheme == "https" else "kennel_session"


def session_id(request: Request) -> str | None:
    return request.cookies.get(cookie_name(request))


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(
        cookie_name(request),
        session.id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        cookie_name(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def set_login_nonce(request: Request, response: Response, nonce: str) -> None:
    response.set_cookie(
        LOGIN_NONCE,
        nonce,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/login",
        max_age=3600,
    )
