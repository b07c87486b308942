"""The dashboard's FastAPI app: one ``Workspace`` for the process, sessions, jobs, the pages and
actions of ``kennel.ui.routes``, and the answers nobody should see a stack trace in.

Every response carries a strict Content-Security-Policy: scripts only from this server (one
small file, ``static/live.js``), styles from this server plus the layout's inline block (by
hash), no frames, forms post only here. Errors are pages with their 4xx status and a sentence;
anything unexpected is logged and shown as a plain 500 page."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from kennel import pages
from kennel.errors import AuthError, ConfigError, KennelError, NotFoundError, status_of
from kennel.serve.auth import Identity
from kennel.serve.deadline import BodyDeadline
from kennel.serve.service import ApiError
from kennel.ui.actions import Jobs
from kennel.ui.bodylimit import BodyLimit
from kennel.ui.logs import AuditStatus
from kennel.ui.origins import KnownHosts, ProxiedScheme
from kennel.ui.sessions import LoginThrottle, Session, SessionStore, session_id
from kennel.wiring import Workspace

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
NAV = (("/", "Overview"), ("/datasets", "Datasets"), ("/runs", "Runs"), ("/models", "Models"),
       ("/deployments", "Deployments"), ("/monitoring", "Monitoring"), ("/alerts", "Alerts"),
       ("/predictions", "Predictions"), ("/audit", "Audit"))  # fmt: skip
MAX_BODY_BYTES = 64 * 1024  # a request body to the dashboard (its forms post a few fields)
MAX_FORM_FIELDS = 32
MAX_FIELD_BYTES = 4096
_LOCAL_PATH = re.compile(r"^/(?![/\\])[\x21-\x7e]*\Z")


def local_path(value: str | None, default: str = "/") -> str:
    """``value`` when it is a path on this server (no scheme, host or ``//``), else ``default``:
    a ``next`` or ``back`` field can never send anyone elsewhere."""
    return value if value and len(value) <= 512 and _LOCAL_PATH.match(value) else default


@dataclass
class Dashboard:
    """What the routes share: the project's workspace and the process's sessions and jobs."""

    ws: Workspace
    sessions: SessionStore = field(default_factory=SessionStore)
    jobs: Jobs = field(default_factory=Jobs)
    audit: AuditStatus = field(default_factory=AuditStatus)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    # successful sign-ins per token id: each is an audit entry and a session
    signins: LoginThrottle = field(default_factory=lambda: LoginThrottle(limit=30))
    live_s: int = 5
    origins: tuple[str, ...] = ()  # kennel ui --public-origin: accepted as Origin on forms
    warmed: threading.Event = field(default_factory=threading.Event)


def warm_up(ui: Dashboard) -> None:
    """What the first views would otherwise pay, done in the background as the dashboard
    starts: every page's template compiled (~1.5 s in all) and the audit chain verified in
    full (the Overview's and Audit's verdict; ~0.2 s per 1,000 entries)."""
    try:
        env = pages.environment()
        for name in env.list_templates(filter_func=lambda n: n.startswith("ui/")):
            env.get_template(name)
        ui.audit.verdict(ui.ws)
    except Exception:  # closing already: a page does the same work when it is asked for
        log.debug("dashboard warm-up stopped", exc_info=True)
    finally:
        ui.warmed.set()


class SignIn(Exception):
    """Raised by a page that needs a signed-in session; answered with a redirect (pages) or a
    401 (the live JSON endpoints)."""

    def __init__(self, next_path: str, why: str = "") -> None:
        super().__init__(why)
        self.next_path = next_path
        self.why = why


def signed_in(request: Request, ui: Dashboard) -> tuple[Session, Identity]:
    """The session and the identity of its token, looked up now: a revoked token ends it."""
    session = ui.sessions.get(session_id(request))
    target = local_path(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    if session is None:
        raise SignIn(target)
    who = ui.ws.tokens.identify(session.token)
    if who is None:
        ui.sessions.drop_token(session.token)
        raise SignIn(target, "your token was revoked: sign in with another")
    return session, who


def _style_hashes() -> str:
    """CSP hashes of the inline <style> blocks of the layout (base.html)."""
    probe = pages.render("ui/layout.html", **blank_context())
    blocks = re.findall(r"<style>(.*?)</style>", probe, flags=re.S)
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'"
        for b in blocks
    )


def blank_context() -> dict[str, Any]:
    return {"title": "kennel", "nav": NAV, "active": "", "who": None, "csrf": "",
            "flash": [], "live_url": "", "live_s": 5}  # fmt: skip


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    title: str,
    session: Session | None = None,
    who: Identity | None = None,
    live_url: str = "",
    flash: bool = True,
    **context: Any,
) -> HTMLResponse:
    """``template`` as a page of the layout; ``flash``: show (and so use up) the session's
    messages from its last action (an error page leaves them for the next page)."""
    ui: Dashboard = request.app.state.ui
    messages = session.flash[:] if session and flash else []
    if messages and session:
        session.flash.clear()
    page = pages.render(
        template,
        **{
            **blank_context(),
            "title": title,
            "active": "/" + request.url.path.strip("/").split("/")[0],
            "who": who,
            "csrf": session.csrf if session else "",
            "flash": messages,
            "live_url": live_url,
            "live_s": ui.live_s,
            **context,
        },
    )
    return HTMLResponse(page, status_code=status)


def error_page(request: Request, status: int, message: str, back: str = "") -> Response:
    ui: Dashboard = request.app.state.ui
    session = ui.sessions.get(session_id(request))
    try:  # the page says who is signed in, unless the database is what failed
        who = ui.ws.tokens.identify(session.token) if session else None
    except KennelError:
        who = None
    headings = {400: "bad request", 401: "sign in first", 403: "not allowed", 404: "not found",
                405: "method not allowed", 408: "too slow", 409: "refused", 413: "too large",
                429: "too many attempts",
                503: "try again later"}  # fmt: skip
    # a refused action's page leads back to the page it came from (the form's ``back``, kept
    # by ``routes.acting``), confined to this server like every ``back``
    back = back or getattr(request.state, "back", "")
    if status == 503 and session is None:
        # a signed-out visitor learns nothing about the stores (their hosts, ports): the
        # detail is in the log (the handler logged it)
        message = "the dashboard cannot reach its database or store just now"
    page = render(
        request,
        "ui/error.html",
        status=status,
        title=f"{status} {headings.get(status, 'error')}",
        session=session if who else None,
        who=who,
        flash=False,  # another request's message (another tab's action) is not this page's
        code=status,
        heading=headings.get(status, "error"),
        message=message,
        back=local_path(back, "") if back else "",
    )
    if status == 503:
        page.headers["Retry-After"] = "10"
    return page


def _api_error_in(exc: BaseException | None) -> ApiError | None:
    """The ApiError behind a form parser's failure (anyio wraps it in an ExceptionGroup)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        return next(filter(None, map(_api_error_in, exc.exceptions)), None)
    return None


def _unplaced(ws: Workspace, message: str) -> str:
    """``message`` without where the project lies on the server's disk: a page shown to any
    signed-in role (a viewer) names the project's folder and a local artifact store as
    "the project folder" and "the artifact store"; the dashboard's log keeps the whole message."""
    places = [(str(ws.project.root), "the project folder")]
    store = ws.project.artifacts_url
    if store.startswith("file://"):  # a local folder named by URL: messages name its path
        places[:0] = [(store, "the artifact store"),
                      (unquote(urlsplit(store).path), "the artifact store")]  # fmt: skip
    elif "://" not in store:  # a local folder, maybe outside the project
        places.insert(0, (store, "the artifact store"))
    for place, name in places:
        if len(place) > 1:  # never "/"
            message = message.replace(place, name)
    return message


def create_app(
    ws: Workspace,
    *,
    allowed_hosts: list[str] | None = None,
    sessions: SessionStore | None = None,
    live_s: int = 5,
    public_origins: tuple[str, ...] = (),
    tls: bool = False,
) -> FastAPI:
    """The dashboard over ``ws``. ``allowed_hosts``: the Host names it answers to (a guard
    against DNS rebinding when it listens on loopback); None answers any. ``public_origins``:
    origins a TLS proxy serves it under, accepted as ``Origin`` (``kennel.ui.origins``).
    ``tls``: served over https itself, so every answer carries Strict-Transport-Security."""
    from kennel.ui import browse, routes

    ui = Dashboard(ws, sessions or SessionStore(), live_s=live_s, origins=public_origins)
    ws.db, ws.registry, ws.tokens, ws.catalog  # noqa: B018 - opened once, before any thread

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        threading.Thread(target=warm_up, args=(ui,), name="kennel-ui-warm-up", daemon=True).start()
        yield
        ws.close()

    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
        # the dashboard's forms are a few short fields: a body past MAX_BODY_BYTES is 413 as
        # it arrives (BodyLimit, below), and a form with more fields, any file or a longer
        # field is 400, before any is kept
        form_limits={
            "max_fields": MAX_FORM_FIELDS,
            "max_files": 0,
            "max_part_size": MAX_FIELD_BYTES,
        },
    )
    app.state.ui = ui
    csp = (
        "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
        f"style-src 'self' {_style_hashes()}; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    )

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        if tls:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")  # thumbnails say theirs
        return response

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(ProxiedScheme)
    app.add_middleware(BodyDeadline, seconds=ws.project.config.serve.body_timeout_s)
    if allowed_hosts:
        app.add_middleware(KnownHosts, hosts=allowed_hosts)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        page = error_page(request, exc.status, exc.detail)  # a body that came too slowly
        page.headers.update(exc.headers or {})
        return page

    @app.exception_handler(SignIn)
    async def _sign_in(request: Request, exc: SignIn) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "signed out", "detail": exc.why}, status_code=401)
        query = {"next": exc.next_path, **({"revoked": "1"} if exc.why else {})}
        return RedirectResponse(f"/login?{urlencode(query)}", 303)

    @app.exception_handler(KennelError)
    async def _kennel(request: Request, exc: KennelError) -> Response:
        # in a request, a ConfigError is the request's mistake (an unknown choice), not the
        # project's: kennel.yaml was read and checked when the dashboard started
        status = 400 if isinstance(exc, ConfigError) else status_of(exc).http_status
        if isinstance(exc, AuthError):
            status = 403
        if isinstance(exc, NotFoundError):
            status = 404
        if status >= 500:
            log.error("dashboard: %s %s: %s", request.method, request.url.path, exc)
        return error_page(request, status, _unplaced(ws, " ".join(str(exc).split())))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return error_page(request, 400, f"this request cannot be read: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if slow := _api_error_in(exc.__cause__):  # a form whose body came too slowly or too big
            return await _api_error(request, slow)
        message = "no such page" if exc.status_code == 404 else str(exc.detail)
        return error_page(request, exc.status_code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("dashboard: %s %s failed", request.method, request.url.path)
        return error_page(request, 500, "something went wrong on the server; it is logged")

    icon = (STATIC / "favicon.svg").read_bytes()

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:  # what browsers ask for first, whatever the page links
        return Response(icon, media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})  # fmt: skip

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    routes.install(app, ui)
    browse.install(app, ui)  # datasets, runs, models
    return app
