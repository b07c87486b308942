"""What the Alerts and Audit pages (and the Overview's monitoring stage) show: incidents from
the alert store, the newest monitoring window from the monitoring store, the audit chain (each
filter and page a query of the audit store) and its verification."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kennel.db.audit import GENESIS, AuditEntry, AuditLog, Verdict, verify
from kennel.db.monitoring import MonitorRunStore
from kennel.errors import KennelError
from kennel.govern.alerts import ACTIVE, Alert, AlertStore
from kennel.govern.feedback import require_feedback
from kennel.serve.auth import Identity
from kennel.ui.views import Button, button
from kennel.wiring import Workspace

STATES = ("open", "acknowledged", "resolved")


class AuditStatus:
    """The chain's verdict for pages. Verifying reads every entry and its anchor (~0.5 ms
    each): once the chain is long that is too much for a page view, and the chain grows with
    every feedback label. So the whole chain is verified at first and every ``full_s``; in
    between, when it grew or ``ttl_s`` passed, only the last entry verified (recomputed: it
    must still be as it was) and those after it are checked, and the anchors must not reach
    past the newest entry. ``kennel audit verify`` always checks everything, and so does
    ``verdict(ws, full=True)`` (the pages' Verify now; at most once every ``min_full_s``). The
    pages say when each was done (``checked_at``): an entry altered after it was verified shows
    only at the next full verification."""

    def __init__(self, ttl_s: float = 30.0, full_s: float = 600.0, min_full_s: float = 5.0) -> None:
        self.ttl_s = ttl_s
        self.full_s = full_s
        self.min_full_s = min_full_s
        self._lock = threading.Lock()
        self._cached: _Checked | None = None
        self._forced_at = -min_full_s

    def checked_at(self) -> tuple[datetime | None, datetime | None]:
        """When the whole chain was last verified, and when entries were last checked (UTC)."""
        with self._lock:
            last = self._cached
        return (last.full_wall, last.wall) if last else (None, None)

    def verdict(self, ws: Workspace, *, full: bool = False) -> Verdict:
        log = AuditLog(ws.db)
        head, now = log.head(), time.monotonic()
        with self._lock:
            last = self._cached
        if full:
            with self._lock:  # verified in full on request a moment ago: that answer stands
                full = now - self._forced_at >= self.min_full_s
                self._forced_at = now if full else self._forced_at
        if not full and last is not None and head == last.head and now - last.at < self.ttl_s:
            return last.verdict
        if (
            not full
            and last is not None
            and last.verdict.ok
            and now - last.full_at < self.full_s
            and head >= last.seq
            and log.hash_of(last.seq) == last.hash
        ):  # from the last entry verified, recomputed: changed since, it fails here
            with ws.db.session() as s:
                result = verify(s, after=last.seq - 1, prev=last.prev)
            full_at, full_wall = last.full_at, last.full_wall
        else:
            with ws.db.session() as s:
                result = verify(s)
            full_at, full_wall = now, datetime.now(UTC)
        seq = result.checked
        digest, prev = (
            (log.hash_of(seq) or "", log.hash_of(seq - 1) or GENESIS) if result.ok else ("", "")
        )
        checked = _Checked(head, seq, digest, prev, now, full_at, result, datetime.now(UTC),
                           full_wall)  # fmt: skip
        with self._lock:
            self._cached = checked
        return result


def verify_now(ws: Workspace, status: AuditStatus, who: Identity) -> tuple[bool, str]:
    """The whole chain verified at once (the pages' Verify now), the check itself audited:
    (ok, what to tell the user)."""
    before, _ = status.checked_at()
    result = status.verdict(ws, full=True)
    verified, _ = status.checked_at()
    if verified != before:  # only a verification that ran is audited: repeated clicks within
        # ``min_full_s`` get its answer and append nothing (any role may click)
        details = {"ok": result.ok, "checked": result.checked, "via": "dashboard"}
        AuditLog(ws.db).append(
            actor=who.name, action="audit.verify", subject="chain", details=details
        )
    if result.ok:
        return True, f"audit chain verified in full: {result.checked} entries intact"
    return False, f"audit chain BROKEN: {result.problem}"


@dataclass(frozen=True)
class _Checked:
    head: int  # the newest entry when checked
    seq: int  # the last entry verified
    hash: str  # its hash
    prev: str  # the hash of the entry before it
    at: float  # when checked (monotonic)
    full_at: float  # when the whole chain was last verified
    verdict: Verdict
    wall: datetime  # ``at`` and ``full_at`` as the pages say them
    full_wall: datetime


@dataclass(frozen=True)
class MonitorSeen:
    at: datetime
    environment: str
    run_id: str
    predictions: int | None
    drifted: bool | None


def last_monitoring(ws: Workspace) -> MonitorSeen | None:
    """The monitoring window that ended last, of any environment."""
    run = MonitorRunStore(ws.db).latest()
    if run is None:
        return None
    n, drifted = run.metrics.get("window.n"), run.metrics.get("drift.drifted")
    return MonitorSeen(
        run.until,
        run.environment,
        run.id,
        int(n) if isinstance(n, int | float) else None,
        None if drifted is None else bool(drifted),
    )


@dataclass(frozen=True)
class AlertView:
    alert: Alert
    buttons: list[Button]
    handled: list[AuditEntry] = field(default_factory=list)  # acknowledged/resolved: by, note


def handling(ws: Workspace, alerts: list[Alert], scan: int = 500) -> dict[int, list[AuditEntry]]:
    """Who acknowledged or resolved each of ``alerts``, when, with what note: the audit
    chain's ``alert.*`` entries (the newest ``scan`` of them), oldest first per alert."""
    wanted = {a.id for a in alerts if a.state != "open"}
    found: dict[int, list[AuditEntry]] = {}
    if wanted:
        for e in reversed(AuditLog(ws.db).query(action="alert", limit=scan)):
            ident = e.details.get("id") if isinstance(e.details, dict) else None
            if ident in wanted and e.action in ("alert.acknowledged", "alert.resolved"):
                found.setdefault(ident, []).append(e)
    return found


def retrain_blocker(ws: Workspace) -> str:
    """Why a retrain would be refused now ("" when it would not)."""
    config = ws.project.config
    try:
        require_feedback(ws.db, ws.registry, config.model.name, config.monitor.environment)
    except KennelError as exc:
        return str(exc)
    return ""


def alert_view(
    alert: Alert,
    who: Identity,
    *,
    job_running: bool,
    retrain_blocker: str = "",
    handled: list[AuditEntry] | None = None,
) -> AlertView:
    fields = {"alert": str(alert.id)}
    closed = [f"alert {alert.id} is resolved"] if alert.state == "resolved" else []
    acked = [f"alert {alert.id} is already acknowledged"] if alert.state == "acknowledged" else []
    busy = closed + (["a retrain is running (see Jobs)"] if job_running else [])
    busy += [retrain_blocker] if retrain_blocker else []
    return AlertView(
        alert,
        [
            button("Acknowledge", "/actions/ack", fields, who=who, permission="alerts",
                   blockers=closed + acked, note="acknowledgement note"),
            button("Resolve", "/actions/resolve", fields, who=who, permission="alerts",
                   blockers=closed, note="resolution note"),
            button("Retrain now", "/actions/retrain", fields, who=who, permission="deploy",
                   blockers=busy),
        ],
        handled or [],
    )  # fmt: skip


def alerts(ws: Workspace, *, state: str | None, limit: int) -> list[Alert]:
    return AlertStore(ws.db).list(state=state, limit=limit)


def alert(ws: Workspace, alert_id: int) -> Alert | None:
    return AlertStore(ws.db).get(alert_id)


def active_counts(ws: Workspace) -> dict[str, int]:
    counts = AlertStore(ws.db).counts()
    return {state: counts.get(state, 0) for state in ACTIVE}


@dataclass(frozen=True)
class AuditPage:
    entries: list[tuple[AuditEntry, str]]  # with its details as one line of JSON
    older: int | None  # the ``before`` of the next page; None: this is the last
    actors: list[str]
    actions: list[str]


def audit(
    ws: Workspace, *, actor: str, action: str, limit: int, before: int | None = None
) -> AuditPage:
    """The newest entries (older than ``before``) whose actor is ``actor`` (exactly) and
    whose action is ``action`` or starts with it followed by a dot (``alert`` matches
    ``alert.acknowledged``), filtered and paged by the database."""
    log = AuditLog(ws.db)
    found = log.query(actor=actor, action=action, before=before, limit=limit + 1)
    shown = found[:limit]
    return AuditPage(
        [(e, json.dumps(e.details, sort_keys=True, default=str)) for e in shown],
        shown[-1].seq if len(found) > limit else None,
        log.actors(),
        log.actions(),
    )
