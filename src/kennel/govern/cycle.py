"""One monitoring cycle: analyse a window, evaluate the alert rules, act on new incidents (and
finish what a killed cycle left undone on open ones)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kennel.govern.actions import ROLLBACK_WAITS, ActionContext, run_actions
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
                "kept": [a.as_dict() for a in self.alerts.kept],
            },
            "actions": {str(k): v for k, v in self.actions.items()},
        }


def undone(actions: Sequence[str], outcomes: Mapping[str, str]) -> list[str]:
    """The rule's actions that are still to do: never done, or a rollback that waited for a
    window of the served version alone (the first window of a bad release straddles it, and
    the rollback it skipped is the one that matters)."""
    return [a for a in actions if a not in outcomes or outcomes[a].startswith(ROLLBACK_WAITS)]


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
    evaluation = store.evaluate(
        rules, result.metrics, subject=result.environment, actor=ctx.actor, run_id=result.id
    )
    actions: dict[int, dict[str, str]] = {}
    if act:
        by_name = {r.name: r for r in rules}
        # a new incident's actions, and those an open one still lacks: a process killed while
        # acting (a retrain takes minutes) left them undone; one still acting holds the claim
        for alert in [*evaluation.opened, *evaluation.ongoing]:
            todo = undone(by_name[alert.rule].actions, alert.actions)
            if not todo or alert.state != "open":  # acknowledged: a person has taken it over
                continue
            with store.claim(alert.id) as mine:
                now = store.get(alert.id) if mine else None  # as the last holder left it
                todo = undone(todo, now.actions) if now is not None else []
                if now is not None and todo:
                    actions[alert.id] = run_actions(ctx, store, now, result, todo)
    return Cycle(result, evaluation, actions)
