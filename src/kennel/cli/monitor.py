"""``kennel monitor | alerts | analyze``: watch production and act on what it shows (telemetry:
``kennel.cli.telemetry``)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape

from kennel.cli.app import (
    MAX_NUMBER,
    PATH,
    ForceOption,
    JsonOption,
    ProjectOption,
    TokenOption,
    acting,
    new_app,
    note_option,
    opened,
)
from kennel.cli.render import console, emit_json, reporting, table
from kennel.errors import ConfigError, NotFoundError
from kennel.serve.diskroom import NOT_KEPT

if TYPE_CHECKING:  # imported where used, so that `kennel --help` starts at once
    from kennel.govern.cycle import Cycle
    from kennel.wiring import Workspace

monitor_app = new_app("Analyse production windows: integrity, drift, performance, fairness.")
alerts_app = new_app("Alerts raised by the monitor's rules.")
analyze_app = new_app("Explain predictions and analyse errors.")

AlertState = Literal["open", "acknowledged", "resolved"]  # kennel.db.alerts.STATES
Window = Annotated[str, typer.Option("--window", help="Window length: 90s, 30m, 24h, 7d.")]
EnvOpt = Annotated[
    str | None, typer.Option("--env", help="Environment (default: monitor.environment).")
]


def _known(ws: Workspace, env: str | None) -> str | None:
    """``env`` if kennel.yaml defines it or predictions were logged under it (``kennel watch``
    logs under ``video``); else the ConfigError naming the defined ones (a typo analysed
    nothing and exited 0). Without ``env``, ``monitor.environment`` is checked the same way."""
    from kennel.db.predictions import PredictionStore

    config = ws.project.config
    name = config.monitor.environment if env is None else env
    if name in config.environments or PredictionStore(ws.db).logged_in(name):
        return env
    try:
        config.environment(name)
    except ConfigError as exc:
        said = "" if env is not None else " (monitor.environment in kennel.yaml)"
        raise ConfigError(
            f"{exc}{said}; no predictions were logged under {name!r} either"
        ) from None
    return env


def _figure(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) and value == value else "n/a"


def _show(cycle: Cycle) -> None:
    r = cycle.result
    m = r.metrics
    n = int(m.get("window.n", 0))
    window = f"{r.since:%Y-%m-%d %H:%M} to {r.until:%Y-%m-%d %H:%M} UTC"
    if n == 0:
        console.print(
            f"{r.environment}: no predictions from {window}; nothing to analyse "
            f"(is `kennel serve --env {r.environment}` answering traffic?)",
            markup=False,
        )
    else:
        served = r.served or "no model"  # every version in the window (it may span a release)
        labelled = int(m.get("performance.labelled", 0))
        drift = m.get("drift.drifted")
        console.print(
            f"{r.environment} {served}, {window}: {n} predictions, {labelled} labelled; drift "
            f"{'YES' if drift else 'no' if drift is not None else 'n/a (too few predictions)'}; "
            f"accuracy {_figure(m.get('performance.accuracy'))} measured, "
            f"{_figure(m.get('performance.estimated_accuracy'))} estimated",
            markup=False,
        )
    for alert in cycle.alerts.opened:
        rule, message = escape(alert.rule), escape(alert.message)
        console.print(f"[red]alert[/] {rule} ({alert.severity}): {message}")
    for alert in cycle.alerts.resolved:
        console.print(f"[green]resolved[/] {escape(alert.rule)}")
    for alert in cycle.alerts.kept:
        console.print(
            f"[yellow]still open[/] {escape(alert.rule)}: not firing in this window, but raised "
            "on a longer one, which only a window as long can resolve"
        )


@monitor_app.command("run")
def monitor_run(
    window: Window = "",
    env: EnvOpt = None,
    act: Annotated[
        bool,
        typer.Option(
            help="Run the rules' actions (notify, rollback, retrain); alerts open and resolve "
            "either way."
        ),
    ] = True,
    report: Annotated[
        str | None,
        typer.Option(
            metavar=PATH, help="Also write the HTML report here (a file, or a folder for it)."
        ),
    ] = None,
    force: ForceOption = False,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Analyse one window (cron it: the daily analysis), raise alerts and act on them."""
    from kennel.fsutil import outside_state, page_target, write_text_atomic
    from kennel.govern.cycle import monitor_once
    from kennel.monitor.runner import parse_span

    target = None  # refused before the analysis acts on anything
    if report is not None:
        target = page_target(report, "monitor-report.html", force=force, option="--report")
    with opened(project) as ws, reporting(json_out) as progress:
        if target is not None:  # before the analysis acts on anything
            outside_state(target, ws.project.state_dir, "--report")
        span = parse_span(window) if window else None
        cycle = monitor_once(
            ws.monitor(), ws.actions(progress), environment=_known(ws, env), span=span, act=act
        )
        if target is not None and cycle.result.report_sha256:
            write_text_atomic(target, ws.content.get(cycle.result.report_sha256).decode())
    if json_out:
        emit_json(cycle.as_dict())
    else:
        _show(cycle)


@monitor_app.command("watch")
def monitor_watch(
    window: Window = "1h",
    every: Annotated[
        float, typer.Option(min=1, max=604_800, help="Seconds between analyses.")
    ] = 60.0,
    count: Annotated[
        int, typer.Option(min=0, max=10**9, help="Stop after N cycles (0 = forever).")
    ] = 0,
    env: EnvOpt = None,
    project: ProjectOption = None,
) -> None:
    """Analyse continuously: a sliding window every --every seconds."""
    from kennel.govern.cycle import monitor_once
    from kennel.monitor.runner import parse_span

    done = 0
    with opened(project) as ws, reporting() as progress:
        monitor, ctx, env = ws.monitor(), ws.actions(progress), _known(ws, env)
        while count == 0 or done < count:
            began = time.monotonic()
            _show(monitor_once(monitor, ctx, environment=env, span=parse_span(window)))
            done += 1
            if count and done >= count:
                break
            time.sleep(max(0.0, every - (time.monotonic() - began)))


@alerts_app.command("list")
def alerts_list(
    state: Annotated[
        AlertState | None, typer.Option(help="Only alerts in this state (default: every one).")
    ] = None,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Newest alerts first."""
    from kennel.govern.alerts import AlertStore

    with opened(project) as ws:
        alerts = AlertStore(ws.db).list(state=state)
    if json_out:
        emit_json([a.as_dict() for a in alerts])
        return
    table(
        "alerts",
        ["id", "rule", "subject", "severity", "state", "count", "message", "last"],
        [
            [a.id, a.rule, a.subject, a.severity, a.state, a.count, a.message,
             f"{a.last_at:%Y-%m-%d %H:%M}"]
            for a in alerts
        ],
    )  # fmt: skip


def _set_state(
    alert_id: int, state: str, note: str, token: str | None, project: Path | None
) -> None:
    from kennel.errors import AuthError
    from kennel.govern.alerts import AlertStore

    with opened(project) as ws:
        who = acting(ws, token)
        if not who.may("alerts"):
            raise AuthError(
                f"role {who.role!r} may not change alerts (it takes {who.roles_for('alerts')})"
            )
        alert = AlertStore(ws.db).set_state(alert_id, state, actor=who.name, note=note)
    console.print(f"alert {alert.id} ({alert.rule}) is now {alert.state}", markup=False)


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[int, typer.Argument(min=1, max=MAX_NUMBER, help="Alert id.")],
    note: Annotated[str, note_option("Why.")] = "",
    token: TokenOption = None,
    project: ProjectOption = None,
) -> None:
    """Acknowledge an alert (it stays deduplicated until resolved; operator, qa or admin)."""
    _set_state(alert_id, "acknowledged", note, token, project)


@alerts_app.command("resolve")
def alerts_resolve(
    alert_id: Annotated[int, typer.Argument(min=1, max=MAX_NUMBER, help="Alert id.")],
    note: Annotated[str, note_option("Why.")] = "",
    token: TokenOption = None,
    project: ProjectOption = None,
) -> None:
    """Resolve an alert by hand (operator, qa or admin). If its condition still holds, the
    next analysis opens a new incident and runs the rule's actions again."""
    _set_state(alert_id, "resolved", note, token, project)


@alerts_app.command("retrain")
def alerts_retrain(
    alert_id: Annotated[int, typer.Argument(min=1, max=MAX_NUMBER, help="Alert id.")],
    token: TokenOption = None,
    project: ProjectOption = None,
) -> None:
    """Retrain now for an alert (the dashboard's button): labelled production images plus a
    warm start from the champion, deployed to staging; refused at once when no production
    image was labelled since the champion was registered."""
    from kennel.errors import AuthError
    from kennel.govern.alerts import AlertStore
    from kennel.govern.feedback import require_feedback
    from kennel.monitor.runner import parse_span

    with opened(project) as ws, reporting() as progress:
        who, config = acting(ws, token), ws.project.config
        if not (who.may("alerts") and who.may("deploy")):
            raise AuthError(f"role {who.role!r} may not retrain and deploy (it takes "
                            f"{who.roles_for('deploy')})")  # fmt: skip
        store = AlertStore(ws.db)
        alert = store.get(alert_id)
        if alert is None:
            raise NotFoundError(f"alert {alert_id} not found")
        require_feedback(ws.db, ws.registry, config.model.name, config.monitor.environment)
        window = (alert.first_at - parse_span(config.monitor.window), alert.last_at)
        outcome = ws.retrain(progress, window, actor=who.name, who=who).summary()
        store.note_action(alert.id, "retrain", outcome, actor=who.name)
    console.print(outcome, markup=False)


@analyze_app.command("saliency")
def analyze_saliency(
    prediction_id: Annotated[str, typer.Argument(help="A logged prediction id.")],
    out: Annotated[
        str, typer.Option(metavar=PATH, help="HTML file to write (or a folder for it).")
    ] = "saliency.html",
    grid: Annotated[int, typer.Option(min=2, max=32, help="Occlusion grid cells per side.")] = 8,
    force: ForceOption = False,
    project: ProjectOption = None,
    json_out: JsonOption = False,
) -> None:
    """Occlusion saliency for a logged prediction, through the model version that served it."""
    from kennel.db.predictions import PredictionStore
    from kennel.fsutil import outside_state, page_target, write_text_atomic
    from kennel.imaging import decode
    from kennel.monitor import analyze

    with opened(project) as ws:
        logged = PredictionStore(ws.db).get(prediction_id)
        if logged is None:
            raise NotFoundError(f"prediction {prediction_id!r} not found")
        # refused before the work; the default name from the id as stored (no path in it)
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", logged.id[:12])
        target = page_target(out, f"saliency-{safe}.html", force=force)
        outside_state(target, ws.project.state_dir)
        ref, digest = logged.ref, logged.input_sha256
        info = {"id": logged.id, "label": logged.label, "confidence": logged.confidence,
                "model": ref}  # fmt: skip
        if digest is None or not ws.content.exists(digest):
            raise NotFoundError(
                f"the input of prediction {prediction_id} was not kept ({NOT_KEPT})"
            )
        predictor = ws.predictor(ref)
        image = decode(ws.content.get(digest), min_side=1).image
    page, drop = analyze.saliency_html(predictor, image, info, grid=grid)
    write_text_atomic(target, page)
    if json_out:
        emit_json({"prediction": prediction_id, "html": str(target), "map": drop.round(4).tolist()})
    else:
        console.print(f"wrote {target}", markup=False)


@analyze_app.command("errors")
def analyze_errors(
    window: Window = "24h",
    env: EnvOpt = None,
    project: ProjectOption = None,
) -> None:
    """Worst labelled mistakes and confusions by slice in a window (JSON)."""
    from kennel.monitor import analyze
    from kennel.monitor.runner import parse_span
    from kennel.monitor.window import load

    with opened(project) as ws:
        until = datetime.now(UTC)
        w = load(
            ws.db,
            environment=_known(ws, env) or ws.project.config.monitor.environment,
            since=until - parse_span(window),
            until=until,
        )
    emit_json(analyze.errors(w))
