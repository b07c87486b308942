"""Server time per dashboard page, p50 and p95 (goal: p95 <= 300 ms each), on (a) a project
such as the demo's (``kennel demo --out DIR``, then ``--project DIR``) and (b) a synthetic
store this script builds through kennel's stores: 100,000 predictions, 1,000 tuning trials, a
week of hourly monitoring windows, feedback, telemetry and alerts.

The page list comes from the app itself: every GET route that is a page (not an action, a
picture, a static file or sign-in) and its live twin under /api/live. A route with parameters
(/alerts/{alert_id}) is measured at the first link to it found on the other pages, so pages
added later are measured without changing this script. The dashboard is served by uvicorn on
loopback in this process; each page is fetched twice to warm up (the first fetch is reported
as ``first_ms``: caches empty), then ``--repeat`` times.

    .venv/bin/python benchmarks/ui_pages.py --synthetic [--predictions 100000 --trials 1000]
    .venv/bin/python benchmarks/ui_pages.py --project .kennel-demo

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.ui.history builds (b)

from kennel.config import init_project, load_project
from kennel.serve.server import free_port, start_app_in_thread
from kennel.ui.app import create_app
from kennel.ui.sessions import SessionStore
from kennel.wiring import Workspace

GOAL_MS = 300.0
NOT_PAGES = re.compile(r"^/(login|logout|static|health|actions)\b|\.\w+$")
HREF = re.compile(r'href="(/[^"#]*)"')
# heavier variants of the search-like pages, measured besides their plain form
EXTRA = ("/predictions?since=31d", "/predictions?since=31d&feedback=yes&label=dog&min_conf=0.9",
         "/audit?actor=park-keeper", "/monitoring?since=30d")  # fmt: skip


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def synthetic(root: Path, predictions: int, trials: int) -> Workspace:
    from tests.ui.history import populate

    project, _ = init_project(root / "p")
    ws = Workspace(project)
    began = time.perf_counter()
    history = populate(ws, windows=168, predictions=predictions, feedback_every=50,
                       trials=trials)  # fmt: skip
    took = time.perf_counter() - began
    say(f"synthetic store: {history.predictions:,} predictions, {history.feedback:,} labels, "
        f"{len(history.runs)} windows, {history.trials:,} trials, {history.telemetry:,} "
        f"telemetry samples, {len(history.alerts)} alerts in {took:.0f} s")  # fmt: skip
    return ws


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
    urls = {t: t for t in templates if "{" not in t}
    wanted = {t: pattern(t.removeprefix("/api/live")) for t in templates if "{" in t}
    queue, seen = [u for u in urls.values() if not u.startswith("/api/")], set()
    while queue and len(urls) < len(templates):
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


def measure(client: httpx.Client, url: str, repeat: int) -> dict[str, Any]:
    """The first request (cold: nothing of this page cached yet), then two to warm up, then
    ``repeat`` measured."""
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


def run(ws: Workspace, repeat: int, label: str) -> dict[str, Any]:
    from kennel.db.audit import AuditLog

    began = time.perf_counter()  # what a page pays when the audit verdict is verified in full
    verdict = AuditLog(ws.db).verify()
    verify_ms = round((time.perf_counter() - began) * 1000, 1)
    secret, who = ws.tokens.create("viewer", "bench-ui", actor="benchmark")
    sessions = SessionStore()
    app = create_app(ws, sessions=sessions)
    server = start_app_in_thread(app, port=free_port())
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            client.cookies.set("kennel_session", sessions.create(secret).id)
            templates = pages_of(app)
            urls = concrete(client, templates)
            results = []
            for template in templates:
                if template not in urls:
                    results.append({"page": template, "url": None, "note": "no link to it found"})
                    continue
                say(f"{label}: {urls[template]}")
                results.append({"page": template, **measure(client, urls[template], repeat)})
            for url in EXTRA:
                say(f"{label}: {url}")
                results.append({"page": url, **measure(client, url, repeat)})
    finally:
        server.stop()
        ws.tokens.revoke(who.token_id, actor="benchmark")
    measured = [r for r in results if r.get("url")]
    return {
        "store": label,
        "goal_p95_ms": GOAL_MS,
        "audit": {"entries": verdict.checked, "ok": verdict.ok, "full_verify_ms": verify_ms},
        "pages": results,
        "over_goal": [r["page"] for r in measured if r["p95_ms"] > GOAL_MS],
        "worst_p95_ms": max((r["p95_ms"] for r in measured), default=None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", type=Path, help="a project folder (or a demo's --out)")
    parser.add_argument("--synthetic", action="store_true", help="build and measure store (b)")
    parser.add_argument("--predictions", type=int, default=100_000)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if not args.project and not args.synthetic:
        parser.error("give --project DIR, --synthetic, or both")
    out = []
    if args.project:
        root = args.project
        if not (root / "kennel.yaml").exists() and (root / "project" / "kennel.yaml").exists():
            root = root / "project"  # the demo's --out folder
        ws = Workspace(load_project(root))
        try:
            out.append(run(ws, args.repeat, f"project {root}"))
        finally:
            ws.close()
    if args.synthetic:
        with tempfile.TemporaryDirectory() as tmp:
            ws = synthetic(Path(tmp), args.predictions, args.trials)
            try:
                out.append(run(ws, args.repeat, "synthetic"))
            finally:
                ws.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
