"""Alert rules over monitoring metrics, with states (open, acknowledged, resolved) and dedupe.

A rule that fires while an alert for the same (rule, subject) is still open or acknowledged
only bumps that alert's count and value: actions run once per incident, not once per window.
When the rule stops firing, the alert resolves by itself.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from kennel.config import RuleConfig
from kennel.db import Database
from kennel.db.audit import record
from kennel.db.schema import AlertRow
from kennel.errors import ConfigError, NotFoundError, StateError

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
ACTIVE = ("open", "acknowledged")


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

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["first_at"], out["last_at"] = self.first_at.isoformat(), self.last_at.isoformat()
        return out


def _alert(row: AlertRow) -> Alert:
    return Alert(
        row.id, row.rule, row.subject, row.severity, row.state, row.metric, row.value,
        row.threshold, row.message, row.first_at, row.last_at, row.count, dict(row.actions),
    )  # fmt: skip


@dataclass(frozen=True)
class Evaluation:
    opened: list[Alert]  # new incidents: their actions should run
    ongoing: list[Alert]
    resolved: list[Alert]


def firing(rule: RuleConfig, metrics: Mapping[str, float]) -> bool | None:
    """True/False, or None when the window has no value for the rule's metric."""
    if rule.metric not in metrics:
        return None
    return OPS[rule.op](metrics[rule.metric], rule.threshold)


class AlertStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def evaluate(
        self,
        rules: Sequence[RuleConfig],
        metrics: Mapping[str, float],
        *,
        subject: str,
        actor: str = "kennel-monitor",
    ) -> Evaluation:
        opened, ongoing, resolved = [], [], []
        now = datetime.now(UTC)
        with self.db.session() as s:
            for rule in rules:
                verdict = firing(rule, metrics)
                if verdict is None:
                    continue
                current = s.scalars(
                    select(AlertRow)
                    .where(AlertRow.rule == rule.name, AlertRow.subject == subject)
                    .where(AlertRow.state.in_(ACTIVE))
                ).first()
                value = float(metrics[rule.metric])
                if verdict and current is not None:
                    current.count += 1
                    current.value, current.last_at = value, now
                    ongoing.append(_alert(current))
                elif verdict:
                    row = AlertRow(
                        rule=rule.name,
                        subject=subject,
                        severity=rule.severity,
                        state="open",
                        metric=rule.metric,
                        value=value,
                        threshold=rule.threshold,
                        message=f"{rule.metric} = {value:.4g} {rule.op} {rule.threshold:g}",
                        first_at=now,
                        last_at=now,
                        count=1,
                        resolved_at=None,
                        actions={},
                    )
                    s.add(row)
                    s.flush()
                    record(s, actor=actor, action="alert.open", subject=f"{rule.name}:{subject}",
                           details={"id": row.id, "message": row.message,
                                    "severity": rule.severity})  # fmt: skip
                    opened.append(_alert(row))
                elif current is not None:
                    current.state, current.resolved_at, current.last_at = "resolved", now, now
                    record(
                        s,
                        actor=actor,
                        action="alert.resolve",
                        subject=f"{rule.name}:{subject}",
                        details={"id": current.id},
                    )
                    resolved.append(_alert(current))
        return Evaluation(opened, ongoing, resolved)

    def note_action(self, alert_id: int, action: str, outcome: str, *, actor: str) -> None:
        with self.db.session() as s:
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
        if state not in ("acknowledged", "resolved"):
            raise ConfigError(f"alert state {state!r}: expected acknowledged or resolved")
        with self.db.session() as s:
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

    def list(self, *, state: str | None = None, limit: int = 50) -> list[Alert]:
        query = select(AlertRow).order_by(AlertRow.id.desc()).limit(limit)
        if state is not None:
            query = query.where(AlertRow.state == state)
        with self.db.session() as s:
            return [_alert(r) for r in s.scalars(query)]
