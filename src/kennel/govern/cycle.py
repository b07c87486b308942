"""One monitoring cycle: analyse a window, evaluate the alert rules, act on new incidents (and
finish what a killed cycle left undone on open ones)."""

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
        # a new incident's actions, and those an open one still lacks: a process killed while
        # acting (a retrain takes minutes) left them undone; one still acting holds the claim
        for alert in [*evaluation.opened, *evaluation.ongoing]:
            todo: list[str] = [a for a in by_name[alert.rule].actions if a not in alert.actions]
            if not todo or alert.state != "open":  # acknowledged: a person has taken it over
                continue
            with store.claim(alert.id) as mine:
                now = store.get(alert.id) if mine else None  # as the last holder left it
                todo = [a for a in todo if now is not None and a not in now.actions]
                if now is not None and todo:
                    actions[alert.id] = run_actions(ctx, store, now, result, todo)
    return Cycle(result, evaluation, actions)
