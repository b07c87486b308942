"""The dashboard's pages, their live JSON twins, signing in and out, and the actions.

Each page ``/path`` has a twin ``/api/live/path`` (same parameters) that answers its live
regions as JSON: ``{"regions": {id: html}, "hashes": {id: digest}, "at": time}``; the page's
script swaps in the regions that changed. Both are built by one function, so a region looks
the same whether it came with the page or a second ago.

Every action is a POST carrying the session's CSRF token, from this origin, by a signed-in
token whose role allows it; it answers with a redirect to the page it came from (``back``),
which then says what happened, or with an error page saying why nothing changed."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Form, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from kennel import pages
from kennel.db import MAX_NUMBER
from kennel.db.deployments import DeploymentStore
from kennel.deploy.policy import PolicyGate
from kennel.errors import AuthError, NotFoundError, did_you_mean
from kennel.serve.auth import Identity
from kennel.ui import actions, logs, views
from kennel.ui.app import Dashboard, SignIn, local_path, render, signed_in
from kennel.ui.query import Printable, PrintableText
from kennel.ui.sessions import (
    LOGIN_NONCE,
    Session,
    check_csrf,
    clear_session_cookie,
    same_origin,
    session_id,
    set_login_nonce,
    set_session_cookie,
)

LIVE = "/api/live"
Csrf = Annotated[str, Form(max_length=200)]
Back = Annotated[str, Form(max_length=512)]
Note = Annotated[str, Form(max_length=500), PrintableText]
Ref = Annotated[str, Form(min_length=1, max_length=200), Printable]
EnvName = Annotated[str, Form(min_length=1, max_length=64), Printable]
AlertId = Annotated[int, Form(ge=1, le=MAX_NUMBER)]
DatasetName = Annotated[str, Form(min_length=1, max_length=128), Printable]
Sha256 = Annotated[str, Form(pattern="^[0-9a-f]{64}$")]
LabelName = Annotated[str, Form(min_length=1, max_length=128), Printable]
Limit = Annotated[int, Query(ge=1, le=1000)]
Text = Annotated[str, Query(max_length=128), Printable]
State = Annotated[str, Query(pattern="^(open|acknowledged|resolved)?$")]


@dataclass
class View:
    template: str
    title: str
    context: dict[str, Any]
    live: dict[str, str] = field(default_factory=dict)  # region id -> partial template


def show(request: Request, session: Session, who: Identity, view: View) -> Response:
    """The page, or (under /api/live) its live regions as JSON."""
    path = request.url.path
    live = path.startswith(LIVE)
    page_path = (path[len(LIVE) :] or "/") if live else path
    query = f"?{request.url.query}" if request.url.query else ""
    context = {"csrf": session.csrf, "back": local_path(page_path + query), **view.context}
    if live:
        regions = {rid: pages.render(t, who=who, **context) for rid, t in view.live.items()}
        digests = {k: hashlib.sha256(v.encode()).hexdigest()[:16] for k, v in regions.items()}
        at = datetime.now(UTC).strftime("%H:%M:%S UTC")
        return JSONResponse({"regions": regions, "hashes": digests, "at": at})
    live_url = (LIVE + (page_path if page_path != "/" else "/") + query) if view.live else ""
    return render(request, view.template, title=view.title, session=session, who=who,
                  live_url=live_url, **context)  # fmt: skip


def install(app: FastAPI, ui: Dashboard) -> None:
    ws = ui.ws
    config = ws.project.config

    def page(path: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
        """Register a GET page at ``path`` and its live twin under /api/live."""

        def register(endpoint: Callable[..., Response]) -> Callable[..., Response]:
            app.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)
            app.add_api_route(LIVE + path, endpoint, methods=["GET"], include_in_schema=False)
            return endpoint

        return register

    # -- pages -------------------------------------------------------------------------------
    @page("/")
    def overview(request: Request) -> Response:
        session, who = signed_in(request, ui)
        o = views.overview(ws, who)
        context = {
            "o": o,
            "accuracy": views.accuracy_series(o.models),
            "alert_counts": logs.active_counts(ws),
            "monitoring": logs.last_monitoring(ws),
            "audit": ui.audit.verdict(ws),
            "audit_at": ui.audit.checked_at(),
        }
        view = View(
            "ui/overview.html",
            "Overview",
            context,
            {"live-strip": "ui/_strip.html", "live-models": "ui/_accuracy.html"},
        )
        return show(request, session, who, view)

    def deployments_view(envs: list[views.EnvView], heading: str, limit: int) -> View:
        certified = DeploymentStore(ws.db).certification_history(config.model.name, limit=10)
        context = {"heading": heading, "envs": envs, "timeline": views.timeline_series(envs),
                   "mode": config.release.mode, "staging": config.release.staging,
                   "history_limit": limit, "certified": certified}  # fmt: skip
        live = {"live-history": "ui/_history.html", "live-envs": "ui/_envs.html",
                "live-certified": "ui/_certified.html"}  # fmt: skip
        return View("ui/deployments.html", heading, context, live)

    @page("/deployments")
    def deployments(request: Request) -> Response:
        session, who = signed_in(request, ui)
        envs = views.environments_of(ws, who)
        return show(request, session, who, deployments_view(envs, "Deployments", 10))

    @page("/deployments/{env}")
    def deployment(request: Request, env: Annotated[str, Path(max_length=64)]) -> Response:
        session, who = signed_in(request, ui)
        if env not in config.environments:
            raise NotFoundError(
                f"no environment {env!r} in kennel.yaml{did_you_mean(env, config.environments)}"
            )
        one = views.environment(ws, PolicyGate(config, ws.db, ws.registry), env, who)
        return show(request, session, who, deployments_view([one], f"Deployment: {env}", 0))

    def alerts_view(
        who: Identity, found: list[Any], heading: str, state: str, limit: int, single: bool
    ) -> View:
        running = ui.jobs.running() is not None
        blocker = logs.retrain_blocker(ws) if found else ""
        handled = logs.handling(ws, found)
        context = {
            "heading": heading,
            "views": [
                logs.alert_view(
                    a, who, job_running=running, retrain_blocker=blocker, handled=handled.get(a.id)
                )
                for a in found
            ],
            "jobs": ui.jobs.all(),
            "states": logs.STATES,
            "state": state,
            "limit": limit,
            "single": single,
        }
        return View("ui/alerts.html", heading, context, {"live-alerts": "ui/_alerts.html"})

    @page("/alerts")
    def alerts(request: Request, state: State = "", limit: Limit = 50) -> Response:
        session, who = signed_in(request, ui)
        found = logs.alerts(ws, state=state or None, limit=limit)
        return show(request, session, who, alerts_view(who, found, "Alerts", state, limit, False))

    @page("/alerts/{alert_id}")
    def alert(request: Request, alert_id: Annotated[int, Path(ge=1, le=MAX_NUMBER)]) -> Response:
        session, who = signed_in(request, ui)
        found = logs.alert(ws, alert_id)
        if found is None:
            raise NotFoundError(f"alert {alert_id} not found")
        view = alerts_view(who, [found], f"Alert {alert_id}", "", 1, True)
        return show(request, session, who, view)

    @page("/audit")
    def audit(
        request: Request,
        actor: Text = "",
        action: Text = "",
        limit: Limit = 100,
        before: Annotated[int | None, Query(ge=1, le=MAX_NUMBER)] = None,
    ) -> Response:
        session, who = signed_in(request, ui)
        found = logs.audit(ws, actor=actor.strip(), action=action.strip(), limit=limit,
                           before=before)  # fmt: skip
        context = {"page": found, "audit": ui.audit.verdict(ws),
                   "audit_at": ui.audit.checked_at(), "actor": actor.strip(),
                   "action": action.strip(), "limit": limit, "before": before}  # fmt: skip
        view = View("ui/audit.html", "Audit", context, {"live-audit": "ui/_audit.html"})
        return show(request, session, who, view)

    from kennel.ui import observe  # Monitoring and Predictions

    observe.install(app, ui, page)

    @app.get("/health/live", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # -- signing in and out ------------------------------------------------------------------
    def login_page(request: Request, next_path: str, problem: str, status: int = 200) -> Response:
        nonce = secrets.token_urlsafe(24)
        response = render(request, "ui/login.html", status=status, title="Sign in",
                          login_csrf=ui.sessions.login_csrf(nonce), next=local_path(next_path),
                          problem=problem)  # fmt: skip
        set_login_nonce(request, response, nonce)
        return response

    @app.get("/login", include_in_schema=False)
    def login_form(
        request: Request,
        next: Annotated[str, Query(max_length=512)] = "/",  # the URL's word
        revoked: Annotated[str, Query(max_length=8)] = "",
    ) -> Response:
        problem = "your token was revoked or is unknown: sign in with another" if revoked else ""
        return login_page(request, next, problem)

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        token: Annotated[str, Form(max_length=200)] = "",
        csrf: Csrf = "",
        next: Back = "/",  # the form's word
    ) -> Response:
        if not same_origin(request, ui.origins):
            raise AuthError("a sign-in from another site is refused")
        ui.sessions.check_login_csrf(request.cookies.get(LOGIN_NONCE), csrf)
        # the peer's own address: uvicorn is told to ignore X-Forwarded-For, which any local
        # client could set to a new address a try (``server_config``)
        address = request.client.host if request.client else "?"
        known = ws.tokens.identify(token.strip())
        if known is None and not ui.throttle.allowed(address):
            # a throttled address still signs in with a valid token (every local user shares
            # 127.0.0.1); its failures are refused unaudited, so they cannot bury the chain
            message = "too many failed sign-ins from here: wait a minute and try again"
            return login_page(request, next, message, status=429)
        if known is not None and not ui.signins.allowed(known.token_id):
            message = "too many sign-ins with this token: wait a minute and try again"
            return login_page(request, next, message, status=429)
        who = ws.tokens.login(token.strip(), via="dashboard")
        if who is None:
            ui.throttle.failed(address)
            return login_page(request, next, "that token is unknown or revoked", status=401)
        ui.sessions.drop(session_id(request))  # a fresh id at every sign-in: no fixation
        ui.signins.failed(who.token_id)  # counted as the throttle counts failures
        session = ui.sessions.create(token.strip())
        session.flash.append(("ok", f"signed in as {who.name} ({who.role})"))
        response = RedirectResponse(local_path(next), 303)
        set_session_cookie(request, response, session)
        response.delete_cookie(LOGIN_NONCE, path="/login")
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf: Csrf = "") -> Response:
        if not same_origin(request, ui.origins):
            raise AuthError("a request from another site is refused")
        session = ui.sessions.get(session_id(request))
        if session is not None:
            check_csrf(session, csrf)
            ui.sessions.drop(session.id)
        response = RedirectResponse("/login", 303)
        clear_session_cookie(request, response)
        return response

    # -- actions -----------------------------------------------------------------------------
    def acting(request: Request, csrf: str, back: str) -> tuple[Session, Identity]:
        """Who may act: same origin, a live session, its CSRF token, a valid token."""
        request.state.back = local_path(back)  # the error page's Back link, if refused
        if not same_origin(request, ui.origins):
            raise AuthError("a request from another site is refused")
        try:
            session, who = signed_in(request, ui)
        except SignIn as exc:
            raise SignIn(local_path(back), exc.why) from None
        check_csrf(session, csrf)
        return session, who

    def done(session: Session, back: str, message: str) -> Response:
        session.flash.append(("ok", message))
        return RedirectResponse(local_path(back), 303)

    @app.post("/actions/approve", include_in_schema=False)
    def approve(
        request: Request, model: Ref, csrf: Csrf = "", back: Back = "/", note: Note = ""
    ) -> Response:
        session, who = acting(request, csrf, back)
        return done(session, back, actions.decide(ws, who, model, "approved", note))

    @app.post("/actions/reject", include_in_schema=False)
    def reject(
        request: Request, model: Ref, csrf: Csrf = "", back: Back = "/", note: Note = ""
    ) -> Response:
        session, who = acting(request, csrf, back)
        return done(session, back, actions.decide(ws, who, model, "rejected", note))

    @app.post("/actions/release", include_in_schema=False)
    def release(
        request: Request,
        model: Ref,
        env: EnvName,
        # the version the page showed served, 0 for none: a click on a page drawn before
        # another release is refused instead of undoing it (required: a post without it,
        # from a page of an older dashboard or a script, cannot be checked so)
        current: Annotated[int, Form(ge=0, le=MAX_NUMBER)],
        csrf: Csrf = "",
        back: Back = "/",
        note: Note = "",
    ) -> Response:
        session, who = acting(request, csrf, back)
        return done(session, back, actions.release(ws, who, model, env, note, seen=current))

    @app.post("/actions/rollback", include_in_schema=False)
    def rollback(
        request: Request,
        env: EnvName,
        csrf: Csrf = "",
        back: Back = "/",
        note: Note = "",
        # the version the page showed served: a second operator's click on a stale page
        # (or a click posted twice) is refused instead of going a second step back
        current: Annotated[int | None, Form(ge=1, le=MAX_NUMBER)] = None,
    ) -> Response:
        session, who = acting(request, csrf, back)
        return done(session, back, actions.rollback(ws, who, env, note, seen=current))

    @app.post("/actions/ack", include_in_schema=False)
    def acknowledge(
        request: Request, alert: AlertId, csrf: Csrf = "", back: Back = "/", note: Note = ""
    ) -> Response:
        session, who = acting(request, csrf, back)
        return done(session, back, actions.set_alert(ws, who, alert, "acknowledged", note))

    @app.post("/actions/resolve", include_in_schema=False)
    def resolve(
        request: Request, alert: AlertId, csrf: Csrf = "", back: Back = "/", note: Note = ""
    ) -> Response:
        session, who = acting(request, csrf, back)
        return done(session, back, actions.set_alert(ws, who, alert, "resolved", note))

    @app.post("/actions/retrain", include_in_schema=False)
    def retrain(request: Request, alert: AlertId, csrf: Csrf = "", back: Back = "/") -> Response:
        session, who = acting(request, csrf, back)
        job = actions.retrain(ws, who, alert, ui.jobs)
        return done(session, back, f"retrain {job.id} started for alert {alert}: see Jobs")

    @app.post("/actions/settle", include_in_schema=False)
    def settle(
        request: Request,
        dataset: DatasetName,
        sha256: Sha256,
        label: LabelName,
        csrf: Csrf = "",
        back: Back = "/",
    ) -> Response:
        session, who = acting(request, csrf, back)
        return done(session, back, actions.settle(ws, who, dataset, sha256, label))

    @app.post("/actions/verify-audit", include_in_schema=False)
    def verify_audit(request: Request, csrf: Csrf = "", back: Back = "/audit") -> Response:
        session, who = acting(request, csrf, back)  # any role: reading is everyone's
        ok, message = logs.verify_now(ws, ui.audit, who)
        session.flash.append(("ok" if ok else "error", message))
        return RedirectResponse(local_path(back), 303)
