"""Every GET route of the dashboard, walked with bad input: unknown ids, malformed ids, numbers
that are not numbers, negative or huge, dates that are not dates, unknown choices and 10 kB
values in every query parameter and path segment. Each answer must be a 4xx HTML page that
says what was wrong in a sentence, never a 500 and never a stack trace.

The routes and their parameters are read from the app itself, so a page added later is walked
too; a parameter this table does not know fails the test until its bad values are added. The
app runs in this process over the session's project (trained models, a dataset, runs,
predictions), served by uvicorn on loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from kennel.config import RuleConfig
from kennel.db.predictions import LoggedPrediction, PredictionQuery, PredictionStore
from kennel.db.runs import RunStore
from kennel.govern.alerts import AlertStore
from kennel.serve.server import RunningServer, start_app_in_thread
from kennel.ui.app import create_app
from kennel.ui.sessions import SessionStore
from kennel.wiring import Workspace
from tests.ui.conftest import Dashboard

HUGE = "9" * 30  # beyond any integer column
LONG = "x" * 10_000  # an oversized search or id
NOT_ROUTES = re.compile(r"^/(static|health)\b")
NUMBER = ["abc", "-1", "0", "1.5", HUGE, str(10**9), LONG]
NUL = "a\x00b"  # PostgreSQL refuses it in a text column (a 503 with the SQL, once)
TIME = ["2024-13-45", "yesterday", "-5d", "9999999d", "2024-01-01T25:00", "9999-12-31T23:00",
        NUL, LONG]  # fmt: skip
INT4 = str(2**31)  # past PostgreSQL's INTEGER (an overflow error, once)
CONFIDENCE = ["abc", "-0.1", "1.5", "nan", "inf", LONG]

# query parameter -> values that must each be refused (a 4xx), whatever else the URL says
QUERY: dict[str, list[str]] = {
    "page": NUMBER, "qpage": [*NUMBER, "999999"], "before": ["abc", "-1", "0", INT4, HUGE, LONG],
    "limit": ["abc", "-1", "0", str(10**9), HUGE, LONG],
    "since": TIME, "until": ["2024-13-45", "tomorrow", "2001-01-01", "9999-12-31", NUL, LONG],
    "min_conf": [*CONFIDENCE, NUL], "max_conf": CONFIDENCE,
    "state": ["bogus", "OPEN", LONG], "status": ["bogus", LONG], "kind": ["bogus", LONG],
    "feedback": ["maybe", "1", LONG], "env": ["nowhere", NUL, LONG], "camera": [NUL, LONG],
    "label": [NUL, LONG], "split": ["sideways", LONG], "slice": ["x", "nocolumn=x", NUL, LONG],
    "against": ["v999", f"v{HUGE}", "v²", "zz", "bad name", LONG],
    "study": ["nosuch", "bad id!", LONG],
    "ids": ["zz", ",".join(f"{i:032x}" for i in range(9)), "0" * 32, LONG],
    "a": ["nope@1", "bad name", "pets@999", f"pets@{HUGE}", "pets@²", LONG],
    "b": ["nope@1", "pets@x", f"pets@{HUGE}", LONG],
    "actor": [NUL, "\x1b[31m", LONG], "action": [NUL, LONG], "next": [LONG], "revoked": [LONG],
}  # fmt: skip
# query parameters that are optional and may be left out; the others are given a good value
REQUIRED = {"ids", "a", "b"}
# path parameter -> (an unknown id that is well formed, malformed ones)
PATH: dict[str, tuple[str, list[str]]] = {
    "name": ("nosuch", ["bad name!", "-", LONG]),
    "spec": ("999", ["v-1", "zz!", HUGE, f"v{HUGE}", "9" * 30, "²", LONG]),
    "env": ("nowhere", ["bad env!", LONG]),
    "alert_id": ("99999999", ["abc", "-1", "0", INT4, HUGE, LONG]),
    "run_id": ("0" * 32, ["xyz", "0" * 31, LONG]),
    "prediction_id": ("no-such-prediction", ["bad id!", LONG]),
    "sha256": ("0" * 64, ["xyz", "0" * 63, LONG]),
}


@dataclass
class Walk:
    client: httpx.Client
    good: dict[str, dict[str, str]]  # route path -> its parameters' good values
    routes: list[APIRoute]


def _good_values(ws: Workspace) -> dict[str, str]:
    """A known value for each parameter, found in (or added to) the store."""
    version = ws.catalog.resolve("park@latest")
    run = RunStore(ws.db).page(limit=1)[0]
    store = PredictionStore(ws.db)
    now = datetime.now(UTC)
    hits, _ = store.search(PredictionQuery(now - timedelta(days=30), now + timedelta(hours=1)))
    if not hits:  # staging's certification logged its answers; in case it did not
        store.add_many([LoggedPrediction("bad-input-1", now, "production", "pets", 1, "cat",
                                         0.9, {"cat": 0.9, "dog": 0.1}, {}, "cam-gate", 3.0,
                                         None, None)])  # fmt: skip
    rules = [RuleConfig(name="bad-input", metric="performance.accuracy", op="<", threshold=0.9)]
    AlertStore(ws.db).evaluate(rules, {"performance.accuracy": 0.5}, subject="production")
    alert = AlertStore(ws.db).list(limit=1)[0]
    return {
        "name": "park", "spec": f"v{version.seq}", "env": "production", "alert_id": str(alert.id),
        "run_id": run.id, "prediction_id": hits[0].id if hits else "bad-input-1",
        "sha256": ws.catalog.rows(version)[0].sha256,
        "ids": run.id, "a": "pets@1", "b": "pets@2",
    }  # fmt: skip


@pytest.fixture(scope="module")
def walk(dashboard: Dashboard) -> Iterator[Walk]:
    ws = Workspace(dashboard.project)  # the app closes its own
    sessions = SessionStore()
    app = create_app(ws, sessions=sessions)
    server: RunningServer = start_app_in_thread(app, port=0)
    routes = [
        r
        for r in app.routes
        if isinstance(r, APIRoute) and "GET" in r.methods and not NOT_ROUTES.search(r.path)
    ]
    values = _good_values(dashboard.ws)
    model = {"name": "pets", "spec": "1"}  # the models' pages name a model; the others a dataset
    good = {r.path: {**values, **(model if family(r.path) == "models" else {})} for r in routes}
    client = httpx.Client(base_url=server.url, timeout=60)
    client.cookies.set("kennel_session", sessions.create(dashboard.tokens["viewer"]).id)
    try:
        yield Walk(client, good, routes)
    finally:
        client.close()
        server.stop()


def url_of(route: APIRoute, path: dict[str, str], query: dict[str, str]) -> str:
    filled = re.sub(r"\{(\w+)\}", lambda m: path[m[1]], route.path)
    return str(httpx.URL(filled, params=query))


def bad_urls(walk: Walk, route: APIRoute) -> Iterator[tuple[str, str]]:
    """(what is wrong, URL) for each bad value of each of the route's parameters."""
    good = walk.good[route.path]
    names = [p.name for p in route.dependant.path_params]
    queries = [p.alias for p in route.dependant.query_params]
    required = {q: good[q] for q in queries if q in REQUIRED}
    for name in names:
        unknown, malformed = PATH[name]
        for value in [unknown, *malformed]:
            yield f"{name}={value[:20]}", url_of(route, {**good, name: value}, required)
    for query in queries:
        assert query in QUERY, f"{route.path}: add the bad values of ?{query}= to QUERY"
        for value in QUERY[query]:
            yield f"?{query}={value[:20]}", url_of(route, good, {**required, query: value})


def refused_clearly(answer: httpx.Response) -> str:
    """What is wrong with the answer to a bad request ('' when nothing)."""
    body = answer.text
    if not 400 <= answer.status_code < 500:
        return f"status {answer.status_code}"
    if "text/html" not in answer.headers.get("content-type", ""):
        return f"not a page: {answer.headers.get('content-type')}"
    if "Traceback" in body or 'File "' in body:
        return "a stack trace"
    heading = re.search(r"<h1>(\d{3}): ", body)
    said = re.search(r'<p class="flash error" role="alert">([^<]{3,400})</p>', body)
    if heading is None or int(heading[1]) != answer.status_code or said is None:
        return "no heading with the status and a sentence"
    return ""


def test_the_walk_covers_every_page_and_their_good_values_answer(walk: Walk) -> None:
    paths = {r.path for r in walk.routes}
    for page in ("/", "/datasets", "/datasets/{name}/{spec}", "/runs", "/runs/{run_id}",
                 "/runs/compare", "/models", "/models/{name}/{spec}", "/models/compare",
                 "/deployments", "/deployments/{env}", "/monitoring", "/alerts",
                 "/alerts/{alert_id}", "/predictions", "/predictions/{prediction_id}",
                 "/audit", "/thumbs/{sha256}"):  # fmt: skip
        assert page in paths
    for route in walk.routes:  # the same URL without the bad value is answered
        if route.path.endswith((".png", ".zip")) or route.path == "/login":
            continue
        good = walk.good[route.path]
        required = {q.alias: good[q.alias] for q in route.dependant.query_params
                    if q.alias in REQUIRED}  # fmt: skip
        url = url_of(route, good, required)
        assert walk.client.get(url).status_code == 200, url


def family(path: str) -> str:
    return path.removeprefix("/api/live").split("/")[1]


@pytest.mark.parametrize("page", ["datasets", "runs", "models", "deployments", "monitoring",
                                  "alerts", "predictions", "audit", "thumbs", "login"])  # fmt: skip
def test_bad_input_is_a_clear_4xx_page(walk: Walk, page: str) -> None:
    """Each page family (its pages, their live twins, its pictures and downloads)."""
    chosen = [r for r in walk.routes if family(r.path) == page]
    problems, walked = [], 0
    for route in chosen:
        for what, url in bad_urls(walk, route):
            walked += 1
            found = refused_clearly(walk.client.get(url))
            if found:
                problems.append(f"{route.path} {what}: {found}")
    assert problems == []
    assert chosen and walked >= len(chosen)


def test_oversized_requests_are_refused_before_any_work(walk: Walk) -> None:
    """A 10 kB query on a page without parameters is ignored (the page answers); a query or
    path far beyond what any page takes is refused by the server."""
    assert walk.client.get("/datasets", params={"q": LONG}).status_code == 200
    answer: Any = walk.client.get("/datasets/" + "x" * 60_000)
    assert 400 <= answer.status_code < 500 and "Traceback" not in answer.text


def test_an_error_page_leaves_the_last_actions_message_for_the_next_page(
    dashboard: Dashboard,
) -> None:
    """A message from the session's last action (another tab's approval, say) is shown by the
    next page, not used up by an error page that another request happened to hit first."""
    sessions = SessionStore()
    server = start_app_in_thread(
        create_app(Workspace(dashboard.project), sessions=sessions), port=0
    )
    session = sessions.create(dashboard.tokens["viewer"])
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            client.cookies.set("kennel_session", session.id)
            session.flash.append(("ok", "pets@2 approved by quinn (qa)"))
            missing = client.get("/models/nosuch")
            assert missing.status_code == 404 and "approved by quinn" not in missing.text
            shown = client.get("/")
            assert shown.status_code == 200 and "pets@2 approved by quinn (qa)" in shown.text
            assert "approved by quinn" not in client.get("/").text  # shown once
    finally:
        server.stop()


def test_a_version_page_shows_only_a_version_of_the_dataset_in_its_url(walk: Walk) -> None:
    """A whole ref in the version part named another dataset's version, and the page drew it
    under this URL's dataset (/datasets/x/park@v1 showed park)."""
    spec = walk.good["/datasets/{name}/{spec}"]["spec"]
    assert walk.client.get(f"/datasets/park/park@{spec}").status_code == 200
    answer = walk.client.get(f"/datasets/parkx/park@{spec}")
    assert answer.status_code == 404 and refused_clearly(answer) == "", answer.text[:300]
