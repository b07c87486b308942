"""Alert rules over monitoring metrics, with states (open, acknowledged, resolved) and dedupe.

A rule that fires while an alert for the same (rule, subject) is still open or acknowledged
only bumps that alert's count and value: actions run once per incident, not once per window.
When the rule stops firing in a window at least as long as the longest that saw it fire, the
alert resolves by itself.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from kennel.config import RuleConfig
from kennel.db import Database
from kennel.db.alerts import ACTIVE, STATES, Alert, AlertRecords, Evaluation, RuleVerdict
from kennel.errors import ConfigError, did_you_mean

__all__ = ["ACTIVE", "OPS", "STATES", "Alert", "AlertStore", "Evaluation", "firing"]

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def firing(rule: RuleConfig, metrics: Mapping[str, float]) -> bool | None:
    """True/False, or None when the window has no value for the rule's metric."""
    if rule.metric not in metrics:
        return None
    return OPS[rule.op](metrics[rule.metric], rule.threshold)


class AlertStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.records = AlertRecords(db)

    def evaluate(
        self,
        rules: Sequence[RuleConfig],
        metrics: Mapping[str, float],
        *,
        subject: str,
        actor: str = "kennel-monitor",
        run_id: str | None = None,
    ) -> Evaluation:
        verdicts = []
        for rule in rules:
            verdict = firing(rule, metrics)
            if verdict is None:
                continue
            value = float(metrics[rule.metric])
            verdicts.append(
                RuleVerdict(
                    rule=rule.name,
                    severity=rule.severity,
                    metric=rule.metric,
                    value=value,
                    threshold=rule.threshold,
                    message=f"{rule.metric} = {value:.4g} {rule.op} {rule.threshold:g}",
                    firing=verdict,
                )
            )
        in_force = [rule.name for rule in rules]
        return self.records.apply(
            verdicts, subject=subject, actor=actor, run_id=run_id, in_force=in_force
        )

    def claim(self, alert_id: int) -> AbstractContextManager[bool]:
        return self.records.claim(alert_id)

    def note_action(self, alert_id: int, action: str, outcome: str, *, actor: str) -> None:
        self.records.note_action(alert_id, action, outcome, actor=actor)

    def set_state(self, alert_id: int, state: str, *, actor: str, note: str = "") -> Alert:
        if state not in ("acknowledged", "resolved"):
            raise ConfigError(f"alert state {state!r}: expected acknowledged or resolved")
        return self.records.set_state(alert_id, state, actor=actor, note=note)

    def list(self, *, state: str | None = None, limit: int = 50) -> list[Alert]:
        """The newest ``limit`` alerts, of one of ``STATES`` or all; another state is refused
        (it would list nothing, as if there were no such alerts)."""
        if state is not None and state not in STATES:
            raise ConfigError(
                f"alert state {state!r}: expected one of {', '.join(STATES)}"
                f"{did_you_mean(state, STATES)}"
            )
        return self.records.list(state=state, limit=limit)

    def get(self, alert_id: int) -> Alert | None:
        return self.records.get(alert_id)

    def counts(self) -> dict[str, int]:
        """Alerts per state, counted by the database."""
        return self.records.counts()

    def between(
        self, *, since: datetime, until: datetime, subject: str | None = None, limit: int = 500
    ) -> builtins.list[Alert]:
        """Alerts seen in [since, until], oldest first (see ``AlertRecords.between``)."""
        return self.records.between(since=since, until=until, subject=subject, limit=limit)
