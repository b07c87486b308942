"""Alerts as stored: one incident per (rule, subject) while it is open or acknowledged, its
count and latest value bumped while the rule keeps firing. Every state change is audited in
its own transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kennel.db import Database, aware
from kennel.db.audit import record
from kennel.db.locking import lease, serialize
from kennel.db.schema import AlertRow, MonitorRunRow
from kennel.errors import NotFoundError, StateError

ACTIVE = ("open", "acknowledged")
STATES = (*ACTIVE, "resolved")


@dataclass(frozen=True)
class Alert:
    id: int
    rule: str
    subject: str
    severity: str
    state: str
    metric: str
    value: float
    threshold: float
    message: str
    first_at: datetime
    last_at: datetime
    count: int
    actions: dict[str, Any]
    run_id: str | None = None  # the monitoring run whose verdict opened it

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["first_at"], out["last_at"] = self.first_at.isoformat(), self.last_at.isoformat()
        return out


@dataclass(frozen=True)
class Evaluation:
    opened: list[Alert]  # new incidents: their actions should run
    ongoing: list[Alert]
    resolved: list[Alert]
    # not firing in this window, left active all the same: raised on a longer one, which a
    # shorter look (the last minute after a day's incident) cannot speak for
    kept: list[Alert] = field(default_factory=list)


@dataclass(frozen=True)
class RuleVerdict:
    """What one rule said about one window: firing or not, on which value."""

    rule: str
    severity: str
    metric: str
    value: float
    threshold: float
    message: str  # shown on an alert this verdict opens
    firing: bool


# Every change of an alert's state or actions reads it first: one key serialises them all
# (a monitor run's opening, bumping and resolving, an acknowledgement, a recorded action), so
# that none writes over what another committed while it waited (a resolved alert reopened).
_ALERTS = "alerts"


def _alert(row: AlertRow) -> Alert:
    return Alert(
        row.id, row.rule, row.subject, row.severity, row.state, row.metric, row.value,
        row.threshold, row.message, aware(row.first_at), aware(row.last_at), row.count,
        dict(row.actions), row.run_id,
    )  # fmt: skip


def _span(s: Session, run_id: str | None) -> timedelta | None:
    """The length of monitoring run ``run_id``'s window; None when it is not known."""
    if run_id is None:
        return None
    run = s.get(MonitorRunRow, run_id)
    return None if run is None else aware(run.until) - aware(run.since)


def _longest_seen(s: Session, alert: AlertRow, subject: str, now: str | None) -> timedelta | None:
    """The longest window that has seen ``alert``'s rule fire: the one that raised it, or a
    longer run of ``subject`` since (every such run fired, or it would have resolved it; a
    shorter one that did not fire kept it open). A quiet minute then cannot close an incident
    a day's window confirmed after a minute's raised it."""
    opened = s.get(MonitorRunRow, alert.run_id) if alert.run_id is not None else None
    if opened is None:
        return None
    runs = select(MonitorRunRow.since, MonitorRunRow.until).where(
        MonitorRunRow.environment == subject,
        MonitorRunRow.at >= opened.at,
        MonitorRunRow.id != (now or ""),
    )
    spans = [aware(until) - aware(start) for start, until in s.execute(runs)]
    return max(spans, default=aware(opened.until) - aware(opened.since))


def _orphans_resolved(
    s: Session, subject: str, in_force: Collection[str], actor: str, now: datetime
) -> list[Alert]:
    orphans = s.scalars(
        select(AlertRow)
        .where(AlertRow.subject == subject, AlertRow.state.in_(ACTIVE))
        .where(AlertRow.rule.not_in(list(in_force)))
        .order_by(AlertRow.id)
    ).all()
    for row in orphans:
        row.state, row.resolved_at, row.last_at = "resolved", now, now
        record(s, actor=actor, action="alert.resolve", subject=f"{row.rule}:{subject}",
               details={"id": row.id, "why": "its rule is no longer in kennel.yaml"})  # fmt: skip
    return [_alert(row) for row in orphans]


class AlertRecords:
    def __init__(self, db: Database) -> None:
        self.db = db

    def apply(
        self,
        verdicts: Sequence[RuleVerdict],
        *,
        subject: str,
        actor: str,
        run_id: str | None = None,
        in_force: Collection[str] | None = None,
    ) -> Evaluation:
        """In one transaction: a firing rule opens an alert for ``subject`` (audited
        ``alert.open``; ``run_id``: the monitoring run whose verdicts these are) or bumps the
        active one; a rule that stopped firing resolves its active alert (audited
        ``alert.resolve``), unless this run's window is shorter than that of the run that
        raised it (``kept``). Given the names of the rules ``in_force``, an active alert of
        ``subject`` raised by any other rule is resolved too: no window can stop a rule that
        was taken out of kennel.yaml from firing, and it stayed open for ever."""
        opened, ongoing, resolved, kept = [], [], [], []
        now = datetime.now(UTC)
        with self.db.session() as s:
            serialize(s, _ALERTS)
            span = _span(s, run_id)
            for verdict in verdicts:
                current = s.scalars(
                    select(AlertRow)
                    .where(AlertRow.rule == verdict.rule, AlertRow.subject == subject)
                    .where(AlertRow.state.in_(ACTIVE))
                ).first()
                if verdict.firing and current is not None:
                    current.count += 1
                    current.value, current.last_at = verdict.value, now
                    ongoing.append(_alert(current))
                elif verdict.firing:
                    row = AlertRow(
                        rule=verdict.rule,
                        subject=subject,
                        severity=verdict.severity,
                        state="open",
                        metric=verdict.metric,
                        value=verdict.value,
                        threshold=verdict.threshold,
                        message=verdict.message,
                        first_at=now,
                        last_at=now,
                        count=1,
                        run_id=run_id,
                        resolved_at=None,
                        actions={},
                    )
                    s.add(row)
                    s.flush()
                    record(s, actor=actor, action="alert.open",
                           subject=f"{verdict.rule}:{subject}",
                           details={"id": row.id, "message": row.message,
                                    "severity": verdict.severity, "metric": verdict.metric,
                                    "threshold": verdict.threshold,
                                    "run_id": run_id,
                                    "first_at": now.isoformat()})  # fmt: skip
                    opened.append(_alert(row))
                elif current is not None:
                    raised_on = _longest_seen(s, current, subject, run_id)
                    if span is not None and raised_on is not None and span < raised_on:
                        kept.append(_alert(current))
                        continue
                    current.state, current.resolved_at, current.last_at = "resolved", now, now
                    record(
                        s,
                        actor=actor,
                        action="alert.resolve",
                        subject=f"{verdict.rule}:{subject}",
                        details={"id": current.id},
                    )
                    resolved.append(_alert(current))
            if in_force is not None:
                resolved += _orphans_resolved(s, subject, in_force, actor, now)
        return Evaluation(opened, ongoing, resolved, kept)

    def claim(self, alert_id: int) -> AbstractContextManager[bool]:
        """Whether this process may run the alert's actions now (True), held while the body
        runs; False while a live process runs them (one killed meanwhile holds nothing)."""
        return lease(self.db.engine, f"alert-actions:{alert_id}")

    def note_action(self, alert_id: int, action: str, outcome: str, *, actor: str) -> None:
        """Write what ``action`` did for the alert on it, audited ``alert.action.<action>``."""
        with self.db.session() as s:
            serialize(s, _ALERTS)
            row = s.get(AlertRow, alert_id)
            if row is None:
                raise NotFoundError(f"alert {alert_id} not found")
            actions = dict(row.actions)
            actions[action] = outcome
            row.actions = actions
            record(s, actor=actor, action=f"alert.action.{action}",
                   subject=f"{row.rule}:{row.subject}",
                   details={"id": alert_id, "outcome": outcome})  # fmt: skip

    def set_state(self, alert_id: int, state: str, *, actor: str, note: str = "") -> Alert:
        """Move an active alert to ``state`` (acknowledged or resolved), audited
        ``alert.<state>``; StateError if it is resolved already or in that state."""
        with self.db.session() as s:
            serialize(s, _ALERTS)  # a monitor run or another click may be changing it now
            row = s.get(AlertRow, alert_id)
            if row is None:
                raise NotFoundError(f"alert {alert_id} not found")
            if row.state == "resolved" or row.state == state:
                # a resolved incident is closed: if its condition returns, that is a new one
                raise StateError(f"alert {alert_id} is already {row.state}")
            row.state = state
            if state == "resolved":
                row.resolved_at = datetime.now(UTC)
            record(s, actor=actor, action=f"alert.{state}", subject=f"{row.rule}:{row.subject}",
                   details={"id": alert_id, "note": note})  # fmt: skip
            return _alert(row)

    def get(self, alert_id: int) -> Alert | None:
        with self.db.session() as s:
            row = s.get(AlertRow, alert_id)
            return _alert(row) if row is not None else None

    def counts(self) -> dict[str, int]:
        """How many alerts are in each state (a state with none is left out)."""
        with self.db.session() as s:
            rows = s.execute(select(AlertRow.state, func.count()).group_by(AlertRow.state))
            return {state: int(n) for state, n in rows}

    def between(
        self, *, since: datetime, until: datetime, subject: str | None = None, limit: int = 500
    ) -> list[Alert]:
        """Alerts seen in [since, until] (first seen before its end, last seen after its
        start), of ``subject`` (None: any), oldest first; the newest ``limit`` when more."""
        query = (
            select(AlertRow)
            .where(AlertRow.first_at <= until, AlertRow.last_at >= since)
            .order_by(AlertRow.first_at.desc(), AlertRow.id.desc())
            .limit(limit)
        )
        if subject is not None:
            query = query.where(AlertRow.subject == subject)
        with self.db.session() as s:
            return [_alert(r) for r in reversed(s.scalars(query).all())]

    def list(self, *, state: str | None = None, limit: int | None = 50) -> list[Alert]:
        """Alerts newest first (``limit`` None: all of them)."""
        query = select(AlertRow).order_by(AlertRow.id.desc()).limit(limit)
        if state is not None:
            query = query.where(AlertRow.state == state)
        with self.db.session() as s:
            return [_alert(r) for r in s.scalars(query)]
