"""What the Alerts and Audit pages (and the Overview's monitoring stage) show: incidents from
the alert store, the audit chain and its verification.

Two reads have no dedicated library call yet, so they are taken from the audit chain, which
records them: the newest monitoring window (``monitor.run`` entries) and filtered audit
entries (the newest ``SCAN`` entries, filtered here). Both are isolated in this module."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from kennel.db import aware
from kennel.db.audit import AuditEntry, Verdict, entries, verify
from kennel.govern.alerts import ACTIVE, Alert, AlertStore
from kennel.serve.auth import Identity
from kennel.ui.views import Button, button
from kennel.wiring import Workspace

SCAN = 5000  # audit entries read for a filtered view
STATES = ("open", "acknowledged", "resolved")


class AuditStatus:
    """The chain's verdict, re-checked when the chain grew or ``ttl_s`` passed: verification
    reads every entry and its anchor, too much for every poll of every page."""

    def __init__(self, ttl_s: float = 30.0) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cached: tuple[int, float, Verdict] | None = None

    def verdict(self, ws: Workspace) -> Verdict:
        with ws.db.session() as s:
            newest = entries(s, 1)
            head = newest[0].seq if newest else 0
            with self._lock:
                cached = self._cached
                if cached and cached[0] == head and time.monotonic() - cached[1] < self.ttl_s:
                    return cached[2]
            result = verify(s)
        with self._lock:
            self._cached = (head, time.monotonic(), result)
        return result


@dataclass(frozen=True)
class MonitorSeen:
    at: datetime
    environment: str
    run_id: str
    predictions: int | None
    drifted: bool | None


def last_monitoring(ws: Workspace) -> MonitorSeen | None:
    """The newest ``kennel monitor run`` window, as the audit chain recorded it."""
    with ws.db.session() as s:
        found = next((e for e in entries(s, SCAN) if e.action == "monitor.run"), None)
    if found is None:
        return None
    env, _, run_id = found.subject.partition(":")
    n, drifted = found.details.get("n"), found.details.get("drifted")
    return MonitorSeen(
        aware(found.at),
        env,
        run_id,
        int(n) if isinstance(n, int | float) else None,
        None if drifted is None else bool(drifted),
    )


@dataclass(frozen=True)
class AlertView:
    alert: Alert
    buttons: list[Button]


def alert_view(alert: Alert, who: Identity, *, job_running: bool) -> AlertView:
    fields = {"alert": str(alert.id)}
    closed = [f"alert {alert.id} is resolved"] if alert.state == "resolved" else []
    acked = [f"alert {alert.id} is already acknowledged"] if alert.state == "acknowledged" else []
    busy = ["a retrain is running (see Jobs)"] if job_running else []
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
    )  # fmt: skip


def alerts(ws: Workspace, *, state: str | None, limit: int) -> list[Alert]:
    return AlertStore(ws.db).list(state=state, limit=limit)


def alert(ws: Workspace, alert_id: int) -> Alert | None:
    """One alert by id (the store lists; an id beyond the newest ``SCAN`` is not found)."""
    return next((a for a in AlertStore(ws.db).list(limit=SCAN) if a.id == alert_id), None)


def active_counts(ws: Workspace) -> dict[str, int]:
    found = AlertStore(ws.db).list(limit=SCAN)
    return {state: sum(a.state == state for a in found) for state in ACTIVE}


@dataclass(frozen=True)
class AuditPage:
    entries: list[tuple[AuditEntry, str]]  # with its details as one line of JSON
    scanned: int
    actors: list[str]
    actions: list[str]


def audit(ws: Workspace, *, actor: str, action: str, limit: int) -> AuditPage:
    """The newest entries whose actor is ``actor`` (exactly) and whose action is ``action`` or
    starts with it followed by a dot (``alert`` matches ``alert.acknowledged``)."""
    with ws.db.session() as s:
        scanned = entries(s, SCAN)
    chosen = [
        e
        for e in scanned
        if (not actor or e.actor == actor)
        and (not action or e.action == action or e.action.startswith(action.rstrip(".") + "."))
    ]
    return AuditPage(
        [(e, json.dumps(e.details, sort_keys=True, default=str)) for e in chosen[:limit]],
        len(scanned),
        sorted({e.actor for e in scanned}),
        sorted({e.action for e in scanned}),
    )
