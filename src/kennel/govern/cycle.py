"""One monitoring cycle: analyse a window, evaluate the alert rules, act on new incidents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kennel.govern.actions import ActionContext, run_actions
from kennel.govern.alerts import AlertStore, Evaluation
from kennel.monitor.runner import Monitor, MonitorResult


@dataclass(frozen=True)
class Cycle:
    result: MonitorResult
    alerts: Evaluation
    actions: dict[int, dict[str, str]]

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.result.as_dict(),
            "alerts": {
                "opened": [a.as_dict() for a in self.alerts.opened],
                "ongoing": [a.as_dict() for a in self.alerts.ongoing],
                "resolved": [a.as_dict() for a in self.alerts.resolved],
            },
            "actions": {str(k): v for k, v in self.actions.items()},
        }


def monitor_once(
    monitor: Monitor,
    ctx: ActionContext,
    *,
    environment: str | None = None,
    span: timedelta | None = None,
    until: datetime | None = None,
    act: bool = True,
) -> Cycle:
    result = monitor.run(environment, span=span, until=until, actor=ctx.actor)
    store = AlertStore(ctx.db)
    rules = ctx.config.monitor.rules
    evaluation = store.evaluate(rules, result.metrics, subject=result.environment, actor=ctx.actor)
    actions: dict[int, dict[str, str]] = {}
    if act:
        by_name = {r.name: r for r in rules}
        for alert in evaluation.opened:
            actions[alert.id] = run_actions(
                ctx, store, alert, result, list(by_name[alert.rule].actions)
            )
    return Cycle(result, evaluation, actions)
