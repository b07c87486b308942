"""What an alert does: log, webhook (POST JSON), email (when SMTP is configured), roll the
environment back, or retrain. Each outcome is written on the alert and in the audit trail;
a failing action is reported, never raised into the monitoring loop."""

from __future__ import annotations

import logging
import smtplib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx

from kennel.config import KennelConfig
from kennel.db import Database
from kennel.deploy.release import ReleaseManager
from kennel.govern.alerts import Alert, AlertStore
from kennel.govern.retrain import RetrainResult, Window
from kennel.monitor.runner import MonitorResult
from kennel.progress import Event, Progress, silent
from kennel.serve.auth import Identity

log = logging.getLogger(__name__)


@dataclass
class ActionContext:
    config: KennelConfig
    db: Database
    releases: ReleaseManager
    # built by the wiring with every dependency; given the alerting window (since, until)
    retrain: Callable[[Progress, Window], RetrainResult]
    progress: Progress = field(default=silent)
    actor: str = "kennel-monitor"


def payload(alert: Alert, result: MonitorResult) -> dict[str, Any]:
    return {
        "alert": alert.as_dict(),
        "environment": result.environment,
        "model": f"{result.model}@{result.version}",
        "versions": result.versions,  # every version in the window; "model" has the most common
        "window": {"since": result.since.isoformat(), "until": result.until.isoformat()},
        "monitor_run": result.id,
    }


# The most one webhook POST or e-mail may take, all of it: httpx's and smtplib's timeouts are
# per read, and a receiver that drips its answer a byte at a time held the cycle for good.
ACTION_DEADLINE_S = 15.0
# What a rollback said when the window mixed versions: not done, so tried again next cycle
ROLLBACK_WAITS = "skipped: the window's predictions came from"


def webhook_host(url: str) -> str:
    """What an outcome says of the webhook: its scheme and host. A webhook URL is a secret
    (Slack's and most chat services' carry the key in the path), and outcomes are stored on
    the alert and in the audit log, which every viewer reads."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the webhook"
    return f"{parts.scheme}://{parts.hostname or ''}{f':{port}' if port else ''}"


def _within_deadline(work: Callable[[], str], what: str) -> str:
    """``work()`` on a thread of its own, given ACTION_DEADLINE_S in all; a daemon thread,
    so that one still blocked never holds the process at exit."""
    done: list[str] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            done.append(work())
        except BaseException as exc:  # handed to the caller, who reports it
            failed.append(exc)

    thread = threading.Thread(target=run, name=f"kennel-action-{what}", daemon=True)
    thread.start()
    thread.join(ACTION_DEADLINE_S)
    if failed:
        raise failed[0]
    if not done:
        raise TimeoutError(f"{what} did not finish within {ACTION_DEADLINE_S:g} s")
    return done[0]


def _webhook(ctx: ActionContext, alert: Alert, result: MonitorResult) -> str:
    url = ctx.config.monitor.webhook_url
    if not url:
        return "skipped: monitor.webhook_url is not set"
    body = payload(alert, result)

    def post() -> str:
        # the status line is the answer: the body is not read (nor waited for)
        with httpx.stream("POST", url, json=body, timeout=5.0) as answer:
            return f"POST {webhook_host(url)} (monitor.webhook_url): {answer.status_code}"

    return _within_deadline(post, "the webhook")


def _email(ctx: ActionContext, alert: Alert, result: MonitorResult) -> str:
    smtp = ctx.config.monitor.smtp
    if not smtp.host or not smtp.to:
        return "skipped: monitor.smtp is not configured"
    message = EmailMessage()
    message["Subject"] = f"[kennel {alert.severity}] {alert.rule} on {result.environment}"
    message["From"], message["To"] = smtp.sender, ", ".join(smtp.to)
    message.set_content(f"{alert.message}\n\nmodel {result.model}@{result.version}\n")

    def send() -> str:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=10) as client:
            client.send_message(message)
        return f"sent to {', '.join(smtp.to)}"

    return _within_deadline(send, "the e-mail")


def _rollback(ctx: ActionContext, alert: Alert, result: MonitorResult) -> str:
    served = ctx.releases.served(result.environment)
    if result.versions != [served]:  # never judge a release by another version's predictions
        judged = ", ".join(str(v) for v in result.versions) or "none"
        return (
            f"{ROLLBACK_WAITS} version(s) {judged}, while "
            f"{result.environment} serves {served} now; a rollback acts only on a window of "
            "the version served"
        )
    # the window acted on, not the one that opened the alert (which may have been refused)
    value = result.metrics.get(alert.metric)
    seen = f"{alert.metric} = {value:.4g}" if isinstance(value, int | float) else alert.message
    event = ctx.releases.rollback(
        result.environment,
        who=Identity.system(f"{ctx.actor} (alert {alert.rule})"),
        reason=f"alert {alert.rule}: {seen} in the window {result.since:%Y-%m-%d %H:%M:%S}"
        f" to {result.until:%Y-%m-%d %H:%M:%S} UTC",
    )
    return f"{event.name}@{event.alias}: {event.from_version} -> {event.to_version}"


def _retrain(ctx: ActionContext, alert: Alert, result: MonitorResult) -> str:
    return ctx.retrain(ctx.progress, (result.since, result.until)).summary()


HANDLERS: dict[str, Callable[[ActionContext, Alert, MonitorResult], str]] = {
    "log": lambda _c, a, _r: f"logged: {a.message}",
    "webhook": _webhook,
    "email": _email,
    "rollback": _rollback,
    "retrain": _retrain,
}


def run_actions(
    ctx: ActionContext, store: AlertStore, alert: Alert, result: MonitorResult, actions: list[str]
) -> dict[str, str]:
    outcomes = {}
    for action in actions:
        try:
            outcome = HANDLERS[action](ctx, alert, result)
        except Exception as exc:  # whatever an action raises is its outcome, never the loop's
            outcome = f"failed: {type(exc).__name__}: {exc}"
            if ctx.config.monitor.webhook_url:  # an error that quotes the secret URL
                outcome = outcome.replace(
                    ctx.config.monitor.webhook_url, webhook_host(ctx.config.monitor.webhook_url)
                )
            log.warning("alert %s: action %s failed: %s", alert.id, action, exc)
        outcomes[action] = outcome
        if alert.actions.get(action) == outcome:  # a retried wait that still waits: said once
            continue
        store.note_action(alert.id, action, outcome, actor=ctx.actor)
        ctx.progress(Event("alert", f"alert {alert.rule} -> {action}: {outcome}"))
    return outcomes
