"""Server time per dashboard page, p50 and p95 (goal: p95 <= 300 ms each, first views too), on
(a) the demo's project (``--demo DIR`` runs ``kennel demo --out DIR`` first when DIR holds none;
``--project DIR`` measures any project) and (b) a synthetic store this script builds through
kennel's stores: two tiny trained models of ``pets``, 100,000 predictions, 1,000 tuning trials,
a week of hourly monitoring windows, feedback, telemetry, alerts, and a dataset ``lake`` whose
v1 holds 100,000 images (60 more quarantined) and v2 appends 1,000.

The page list comes from the app itself: every GET route that is a page (not an action, a
picture, a static file or sign-in) and its live twin under /api/live. A route with parameters
(/alerts/{alert_id}) is measured at the first link to it found on the other pages, so pages
added later are measured without changing this script; the views a page offers through its
query (a study, a diff, two runs or models compared, a filtered search) are added from the
store. The URLs are found on one dashboard; they are measured on a second one, just started
over a fresh workspace (its data caches empty; its templates compiled and the audit chain
verified as it starts, as a user finds it): each URL's first fetch is reported as
``first_ms``, then two warm-ups, then ``--repeat`` measured. Served by uvicorn on loopback
in this process.

    .venv/bin/python benchmarks/ui_pages.py --demo .kennel-demo --synthetic
    .venv/bin/python benchmarks/ui_pages.py --project PROJECT

Signing in creates a viewer token in the project's store (audited), revoked at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi.routing import APIRoute

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.ui.* build (b)

from kennel.config import load_project
from kennel.db.runs import RunStore
from kennel.serve.server import free_port, start_app_in_thread
from kennel.ui.app import create_app
from kennel.ui.sessions import SessionStore
from kennel.wiring import Workspace

GOAL_MS = 300.0
NOT_PAGES = re.compile(r"^/(login|logout|static|health|actions|thumbs)\b|\.\w+$")
HREF = re.compile(r'href="(/[^"#]*)"')
NEEDS_QUERY = {"/runs/compare", "/models/compare"}  # a page only with ?ids= / ?a=&b=
# heavier variants of the search-like pages, measured besides their plain form
SEARCHES = ("/predictions?since=31d", "/predictions?since=31d&feedback=yes&label=dog&min_conf=0.9",
            "/audit?actor=park-keeper", "/monitoring?since=30d")  # fmt: skip


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def synthetic(root: Path, predictions: int, trials: int, images: int) -> Workspace:
    from tests.serving import served_project
    from tests.ui.big_dataset import populate_dataset
    from tests.ui.history import populate

    began = time.perf_counter()
    ws = Workspace(served_project(root, models=2))  # park v1, pets@1 and pets@2, trained
    history = populate(ws, windows=168, predictions=predictions, feedback_every=50,
                       trials=trials)  # fmt: skip
    big = populate_dataset(ws, "lake", images=images)
    took = time.perf_counter() - began
    say(f"synthetic store: {history.predictions:,} predictions, {history.feedback:,} labels, "
        f"{len(history.runs)} windows, {history.trials:,} trials, {history.telemetry:,} "
        f"telemetry samples, {len(history.alerts)} alerts, lake v1 {big.first.n_rows:,} and "
        f"v2 {big.second.n_rows:,} images in {took:.0f} s")  # fmt: skip
    return ws


def demo(folder: Path) -> Path:
    """The demo's project in ``folder``, made by ``kennel demo`` when it is not there yet."""
    if not (folder / "project" / "kennel.yaml").exists():
        from kennel.demo import run_demo

        say(f"running kennel demo --out {folder} (a few minutes)")
        if not run_demo(folder)["ok"]:
            raise SystemExit("the demo's own checks failed")
    return folder / "project"


def pages_of(app: Any) -> list[str]:
    """Every page route and live twin of the app, as path templates."""
    found = []
    for route in app.routes:
        is_get = isinstance(route, APIRoute) and "GET" in route.methods
        if is_get and not NOT_PAGES.search(route.path.removeprefix("/api/live")):
            found.append(route.path)
    return found


def pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/?]+", re.escape(template)) + "$")


def concrete(client: httpx.Client, templates: list[str]) -> dict[str, str]:
    """A URL for each template: itself when it has no parameter, else the first link to it
    on the pages crawled from the others."""
    urls = {t: t for t in templates if "{" not in t and t not in NEEDS_QUERY}
    wanted = {t: pattern(t.removeprefix("/api/live")) for t in templates if "{" in t}
    queue, seen = [u for u in urls.values() if not u.startswith("/api/")], set()
    while queue and len(urls) < len(templates) - len(NEEDS_QUERY & set(templates)):
        path = queue.pop(0)
        if path in seen or len(seen) > 200:
            continue
        seen.add(path)
        answer = client.get(path)
        if "text/html" not in answer.headers.get("content-type", ""):
            continue
        for link in HREF.findall(answer.text):
            bare = link.split("?")[0].replace("&amp;", "&")
            for template, regex in wanted.items():
                if template not in urls and regex.match(bare):
                    prefix = "/api/live" if template.startswith("/api/live") else ""
                    urls[template] = prefix + bare
            if not NOT_PAGES.search(bare) and bare not in seen:
                queue.append(bare)
    return urls


def views(ws: Workspace) -> list[str]:
    """The views pages offer through their query, on what this store holds: the largest
    dataset version filtered and diffed against its parent, the largest study, two trials
    compared, two model versions compared, and the heavier searches."""
    found = []
    versions = [v for n in ws.catalog.datasets() for v in ws.catalog.versions(n)]
    if versions:
        big = max(versions, key=lambda v: (v.n_rows, v.seq))
        found.append(f"/datasets/{big.dataset}/v{big.seq}?split=test")
        parent = ws.catalog.store.get(big.dataset, big.parent_id) if big.parent_id else None
        if parent is not None:
            found.append(f"/datasets/{big.dataset}/v{big.seq}?against=v{parent.seq}")
    runs = RunStore(ws.db)
    studies = runs.studies(limit=50)
    pair = runs.page(limit=2)  # the newest two, unless a study has trials to compare
    if studies:
        study = max(studies, key=lambda s: s.trials)
        found.append(f"/runs?study={study.id}")
        pair = runs.page(limit=2, study=study.id, kind="trial") or pair
    if len(pair) == 2:
        found.append(f"/runs/compare?ids={pair[0].id}&ids={pair[1].id}")
    for name in ws.registry.store.names():
        models = ws.registry.store.page(name, limit=2)
        if len(models) == 2:
            found.append(f"/models/compare?a={models[1].ref}&b={models[0].ref}")
            break
    return found + list(SEARCHES)


def measure(client: httpx.Client, url: str, repeat: int) -> dict[str, Any]:
    """The first request (this page's caches empty), then two to warm up, then ``repeat``
    measured."""
    times, size, first = [], 0, 0.0
    for i in range(repeat + 2):
        began = time.perf_counter()
        answer = client.get(url)
        elapsed = (time.perf_counter() - began) * 1000
        if answer.status_code != 200:
            raise SystemExit(f"{url}: HTTP {answer.status_code}: {answer.text[:300]}")
        if i == 0:
            first = elapsed
        if i >= 2:
            times.append(elapsed)
            size = len(answer.content)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return {"url": url, "first_ms": round(first, 1), "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(p95, 1), "max_ms": round(times[-1], 1), "n": len(times),
            "bytes": size}  # fmt: skip


def serve(ws: Workspace, secret: str) -> tuple[Any, Any, httpx.Client]:
    sessions = SessionStore()
    app = create_app(ws, sessions=sessions)
    server = start_app_in_thread(app, port=free_port())
    app.state.ui.warmed.wait(120)  # as a user finds it seconds after starting it
    client = httpx.Client(base_url=server.url, timeout=60)
    client.cookies.set("kennel_session", sessions.create(secret).id)
    return app, server, client


def run(ws: Workspace, repeat: int, label: str) -> dict[str, Any]:
    from kennel.db.audit import AuditLog

    began = time.perf_counter()  # what a page pays when the audit verdict is verified in full
    verdict = AuditLog(ws.db).verify()
    verify_ms = round((time.perf_counter() - began) * 1000, 1)
    secret, who = ws.tokens.create("viewer", "bench-ui", actor="benchmark")
    app, server, client = serve(ws, secret)
    try:  # find the URLs on one dashboard ...
        templates = pages_of(app)
        urls = concrete(client, templates)
    finally:
        client.close()
        server.stop()
    fresh = Workspace(ws.project)  # ... and measure them on another, every cache empty
    _app, server, client = serve(fresh, secret)
    results = []
    try:
        for template in templates:
            if template not in urls:
                note = "a page of its query: see the views" if template in NEEDS_QUERY else ""
                results.append({"page": template, "url": None,
                                 "note": note or "no link to it found"})  # fmt: skip
                continue
            say(f"{label}: {urls[template]}")
            results.append({"page": template, **measure(client, urls[template], repeat)})
        for url in views(ws):
            say(f"{label}: {url}")
            results.append({"page": url, **measure(client, url, repeat)})
    finally:
        client.close()
        server.stop()
        fresh.close()
        ws.tokens.revoke(who.token_id, actor="benchmark")
    measured = [r for r in results if r.get("url")]
    return {
        "store": label,
        "goal_p95_ms": GOAL_MS,
        "audit": {"entries": verdict.checked, "ok": verdict.ok, "full_verify_ms": verify_ms},
        "pages": results,
        "over_goal": [r["page"] for r in measured if r["p95_ms"] > GOAL_MS],
        "first_over_goal": [r["page"] for r in measured if r["first_ms"] > GOAL_MS],
        "worst_p95_ms": max((r["p95_ms"] for r in measured), default=None),
    }


def measure_project(root: Path, repeat: int, label: str) -> dict[str, Any]:
    ws = Workspace(load_project(root))
    try:
        return run(ws, repeat, label)
    finally:
        ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo", type=Path, help="the demo's --out folder (made when absent)")
    parser.add_argument("--project", type=Path, help="any project folder")
    parser.add_argument("--synthetic", action="store_true", help="build and measure store (b)")
    parser.add_argument("--predictions", type=int, default=100_000)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if not (args.demo or args.project or args.synthetic):
        parser.error("give --demo DIR, --project DIR, --synthetic, or several")
    out = []
    if args.demo:
        out.append(measure_project(demo(args.demo), args.repeat, f"demo {args.demo}"))
    if args.project:
        out.append(measure_project(args.project, args.repeat, f"project {args.project}"))
    if args.synthetic:
        with tempfile.TemporaryDirectory() as tmp:
            ws = synthetic(Path(tmp), args.predictions, args.trials, args.images)
            try:
                out.append(run(ws, args.repeat, "synthetic"))
            finally:
                ws.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
