"""What the dashboard's buttons do: the very library calls the CLI makes (``kennel approve |
reject | release | rollback``, ``kennel alerts ack | resolve``, ``kennel data settle``, the
retrain action), with the
signed-in token's identity as the actor, so each lands in the audit chain as the CLI's would.

The role is checked here before any call, as the CLI does, and again by the library itself."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from kennel.errors import AuthError, KennelError, NotFoundError, StateError
from kennel.progress import Event, Progress
from kennel.serve.auth import Identity
from kennel.wiring import Workspace

log = logging.getLogger(__name__)


def _require(who: Identity, permission: str, verb: str) -> None:
    if not who.may(permission):
        raise AuthError(
            f"your role ({who.role}) may not {verb}; it takes {Identity.roles_for(permission)}"
        )


def decide(ws: Workspace, who: Identity, ref: str, decision: str, note: str) -> str:
    _require(who, "approve", "approve or reject")
    releases = ws.releases()
    row = releases.decide(ref, decision, who=who, note=note)
    said = f"{row.model}@{row.version} {row.decision} by {row.actor}"
    served = releases.serving(ws.registry.resolve(f"{row.model}@{row.version}"))
    if decision == "rejected" and served:
        said += f"; warning: {releases.still_served(f'{row.model}@{row.version}', served)}"
    return said


def release(
    ws: Workspace, who: Identity, ref: str, env: str, reason: str, seen: int | None = None
) -> str:
    _require(who, "release", "release")
    _environment(ws, env)
    event = ws.releases().release(ref, env, who=who, reason=reason or "release", seen=seen)
    return f"{event.name}@{event.alias}: {event.from_version or '-'} -> {event.to_version or '-'}"


def rollback(ws: Workspace, who: Identity, env: str, reason: str, seen: int | None = None) -> str:
    _require(who, "rollback", "roll back")
    _environment(ws, env)
    event = ws.releases().rollback(env, who=who, reason=reason or "by request", seen=seen)
    return f"{event.name}@{event.alias}: {event.from_version or '-'} -> {event.to_version or '-'}"


def set_alert(ws: Workspace, who: Identity, alert_id: int, state: str, note: str) -> str:
    from kennel.govern.alerts import AlertStore

    _require(who, "alerts", "change alerts")
    alert = AlertStore(ws.db).set_state(alert_id, state, actor=who.name, note=note)
    return f"alert {alert.id} ({alert.rule}) is now {alert.state}"


def settle(ws: Workspace, who: Identity, dataset: str, sha256: str, label: str) -> str:
    """``kennel data settle``: the label a disputed content takes from now on."""
    from kennel.db.ingest import IngestStore
    from kennel.ingest.disputes import settle as settled

    _require(who, "feedback", "settle labels")
    store, labels = IngestStore(ws.db), ws.project.config.data.labels
    d, changed = settled(store, ws.catalog, dataset, sha256, label, labels=labels, actor=who.name)
    if not changed:
        return f"sha256:{d.sha256[:12]} in {dataset} was settled as {label!r} already"
    return f"sha256:{d.sha256[:12]} in {dataset} settled as {label!r}; ingest its files again"


def _environment(ws: Workspace, env: str) -> None:
    if env not in ws.project.config.environments:
        raise NotFoundError(f"no environment {env!r} in kennel.yaml")


class JobFailed(Exception):
    """A job's work failed and said how, in words meant for the Jobs table."""


@dataclass
class Job:
    """A long action running in the background (a retrain), shown live on the Alerts page."""

    id: str
    kind: str
    subject: str
    actor: str
    started: datetime
    state: str = "running"  # running | done | failed
    message: str = ""
    finished: datetime | None = None
    events: list[str] = field(default_factory=list)


class Jobs:
    """At most one background job at a time: a retrain trains and deploys to staging, which
    two at once would fight over."""

    def __init__(self, keep: int = 20) -> None:
        self.keep = keep
        self._jobs: list[Job] = []
        self._lock = threading.Lock()

    def running(self) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs if j.state == "running"), None)

    def all(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs))

    def start(self, kind: str, subject: str, actor: str, work: Callable[[Progress], str]) -> Job:
        with self._lock:
            if any(j.state == "running" for j in self._jobs):
                raise StateError("a job is already running: wait for it to finish")
            job = Job(uuid.uuid4().hex[:12], kind, subject, actor, datetime.now(UTC))
            self._jobs = [*self._jobs[-(self.keep - 1) :], job]

        def progress(event: Event) -> None:
            if event.message:
                with self._lock:
                    job.message = event.message
                    job.events = [*job.events[-49:], event.message]

        def run() -> None:
            try:
                outcome, state = work(progress), "done"
            except JobFailed as exc:
                outcome, state = str(exc), "failed"
            except (KennelError, OSError, ImportError) as exc:
                outcome, state = f"failed: {type(exc).__name__}: {exc}", "failed"
            except Exception as exc:  # a background thread has no caller to raise to
                log.exception("dashboard job %s failed", job.id)
                outcome, state = f"failed: {type(exc).__name__}: {exc}", "failed"
            with self._lock:
                job.state, job.message, job.finished = state, outcome, datetime.now(UTC)

        threading.Thread(target=run, name=f"kennel-ui-{kind}", daemon=True).start()
        return job


def retrain(ws: Workspace, who: Identity, alert_id: int, jobs: Jobs) -> Job:
    """The alert's retrain action, started by a person: labelled production images plus a
    warm start from the champion, deployed to staging. The window it weights is the span of
    monitoring windows that raised the alert (its first window's start to its last's end);
    the outcome is noted on the alert as the automatic action's is. Refused at once (nothing
    starts) when no production image was labelled since the champion was registered."""
    from kennel.govern.alerts import AlertStore
    from kennel.govern.feedback import require_feedback
    from kennel.monitor.runner import parse_span

    _require(who, "alerts", "change alerts")
    _require(who, "deploy", "retrain and deploy")
    store = AlertStore(ws.db)
    alert = store.get(alert_id)
    if alert is None:
        raise NotFoundError(f"alert {alert_id} not found")
    config = ws.project.config
    require_feedback(ws.db, ws.registry, config.model.name, config.monitor.environment)
    span: timedelta = parse_span(ws.project.config.monitor.window)
    window = (alert.first_at - span, alert.last_at)

    def work(progress: Progress) -> str:
        try:
            outcome = ws.retrain(progress, window, actor=who.name, who=who).summary()
        except (KennelError, OSError, ImportError) as exc:  # noted as the alert action's are
            outcome = f"failed: {type(exc).__name__}: {exc}"
            store.note_action(alert.id, "retrain", outcome, actor=who.name)
            raise JobFailed(outcome) from exc
        store.note_action(alert.id, "retrain", outcome, actor=who.name)
        return outcome

    return jobs.start("retrain", f"alert {alert.id} ({alert.rule})", who.name, work)
