"""The dashboard in a real browser (Debian's Chromium through Playwright), over a project with
a certified model in staging: the people of the park sign in with their role tokens and act,
and the store, the audit chain and the services show that they did, or that nothing changed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from kennel.cli.main import app
from kennel.config import RuleConfig
from kennel.datasets.synth import render
from kennel.db.audit import entries
from kennel.db.predictions import PredictionQuery, PredictionStore
from kennel.db.runs import RunStore
from kennel.deploy import environments
from kennel.deploy.policy import PolicyGate
from kennel.govern.actions import run_actions
from kennel.govern.alerts import Alert, AlertStore
from kennel.monitor.runner import MonitorResult
from tests.serving import wait_until
from tests.ui.conftest import Dashboard, axe_problems, sign_in
from tests.ui.more_data import record_study


def gate(dash: Dashboard) -> PolicyGate:
    return PolicyGate(dash.project.config, dash.ws.db, dash.ws.registry)


def audit_head(dash: Dashboard) -> int:
    with dash.ws.db.session() as s:
        return entries(s, 1)[0].seq


def newest_audit(dash: Dashboard, action: str) -> Any:
    with dash.ws.db.session() as s:
        return next(e for e in entries(s, 200) if e.action == action)


def raise_alert(dash: Dashboard, rule: str) -> Alert:
    rules = [RuleConfig(name=rule, metric="performance.accuracy", op="<", threshold=0.9)]
    store = AlertStore(dash.ws.db)
    opened = store.evaluate(rules, {"performance.accuracy": 0.55}, subject="production").opened
    assert len(opened) == 1
    return opened[0]


def alert_state(dash: Dashboard, alert_id: int) -> Alert:
    return next(a for a in AlertStore(dash.ws.db).list(limit=500) if a.id == alert_id)


def every_page(dash: Dashboard, alert: Alert) -> list[str]:
    """Each page of the dashboard with what it shows filled in from the store: the list pages
    of the menu and one of each detail page."""
    ws = dash.ws
    version = ws.catalog.resolve("park@latest")
    runs = RunStore(ws.db).page(limit=2)
    studies = RunStore(ws.db).studies(limit=1)
    study = studies[0].id if studies else record_study(ws)[0]  # the builds tuned nothing
    now = datetime.now(UTC)
    hits, _ = PredictionStore(ws.db).search(PredictionQuery(now - timedelta(days=30), now))
    pages = ["/", "/datasets", "/datasets/park", f"/datasets/park/v{version.seq}", "/runs",
             f"/runs?study={study}", f"/runs/{runs[0].id}",
             f"/runs/compare?ids={runs[0].id}&ids={runs[1].id}", "/models", "/models/pets",
             "/models/pets/1", "/models/compare?a=pets@1&b=pets@2", "/deployments",
             "/deployments/staging", "/deployments/production", "/monitoring", "/alerts",
             f"/alerts/{alert.id}", "/predictions", "/audit"]  # fmt: skip
    if version.parent_id is not None:
        parent = ws.catalog.resolve(f"park@{version.parent_id}")
        pages.append(f"/datasets/park/v{version.seq}?against=v{parent.seq}")
    assert hits  # staging's certification logged its answers
    return [*pages, f"/predictions/{hits[0].id}"]


def test_every_page_opens_and_passes_axe(dashboard: Dashboard, browser: Any) -> None:
    alert = raise_alert(dashboard, "axe-check")  # an incident on its page, with its buttons
    page = sign_in(browser, dashboard, "qa")
    menu = page.locator("header nav a:not(.brand)").evaluate_all("as => as.map(a => a.pathname)")
    pages = every_page(dashboard, alert)
    assert len(menu) == 9 and set(menu) <= set(pages)
    for path in pages:
        response = page.goto(path)
        assert response.status == 200, path
        assert page.locator("h1").count() == 1, path
        assert axe_problems(page) == [], path
    for path, status in (("/alerts/99999999", 404), ("/audit?limit=oops", 400)):
        assert page.goto(path).status == status
        assert axe_problems(page) == [], path
    page.context.clear_cookies()
    page.goto("/")
    assert page.url.startswith(dashboard.url + "/login")
    assert axe_problems(page) == [], "/login"
    page.context.close()


def test_qa_approves_and_operator_releases_then_rolls_back(
    dashboard: Dashboard, browser: Any
) -> None:
    registry = dashboard.ws.registry
    candidate = registry.resolve("pets@staging")
    assert candidate.version == 2 and gate(dashboard).decision(candidate) is None
    # QA: the certified version in staging, approved with a note
    qa = sign_in(browser, dashboard, "qa", "/deployments")
    assert qa.locator("#env-staging .serves").inner_text() == "pets@2"
    release = qa.locator("#env-production button", has_text="Release pets@2")
    assert release.is_disabled()  # qa may release, but pets@2 is not approved yet
    assert "no QA approval" in qa.locator("#env-production .why").first.inner_text()
    qa.locator("#env-staging").get_by_label("approval note").fill("report checked")
    qa.click("#env-staging button:has-text('Approve')")
    qa.wait_for_url(f"{dashboard.url}/deployments")
    assert "pets@2 approved by quinn (qa)" in qa.locator(".flash").inner_text()
    decision = gate(dashboard).decision(candidate)
    assert decision is not None and decision.decision == "approved"
    assert decision.actor == "quinn (qa)" and decision.note == "report checked"
    again = qa.locator("#env-staging button:has-text('Approve')")
    assert again.is_disabled()  # a second click would add a second approval
    assert "already approved by quinn (qa)" in qa.locator("#env-staging .why").first.inner_text()
    approved = newest_audit(dashboard, "model.approved")
    assert (approved.actor, approved.subject) == ("quinn", "pets@2")
    # QA keeps the overview open: it must show production moving without a reload; a second
    # tab keeps Deployments open: its alias history chart must gain the release's point
    qa.goto("/")
    history = qa.context.new_page()
    history.goto("/deployments")
    drawn = history.locator(
        "svg[aria-label='version each environment served over time'] circle"
        "[data-series='production']"
    )
    before = drawn.count()
    assert qa.locator("#stage-production").get_by_text("pets@1").count() == 1
    # the operator releases it ...
    ops = sign_in(browser, dashboard, "operator", "/deployments")
    ops.locator("#env-production").get_by_label("release reason").fill("weekly release")
    ops.click("#env-production button:has-text('Release pets@2')")
    ops.wait_for_url(f"{dashboard.url}/deployments")
    assert registry.resolve("pets@production").version == 2
    moved = registry.alias_history("pets", "production")[-1]
    assert (moved.kind, moved.actor, moved.reason) == ("release", "olga", "weekly release")
    wait_until(lambda: environments.served_version(dashboard.production.url) == 2)
    ops.reload()
    assert ops.locator("#env-production .serves").inner_text() == "pets@2"
    ops.locator("#env-production", has_text="answering with version 2").wait_for()
    qa.locator("#stage-production", has_text="pets@2").wait_for(timeout=15000)  # live
    assert qa.url == f"{dashboard.url}/"  # no navigation happened: the region was swapped
    blockers = qa.locator("#release-blockers").inner_text()
    assert "production already serves pets@2" in blockers and "may be released" not in blockers
    wait_until(lambda: drawn.count() == before + 1)
    assert float(drawn.nth(before).get_attribute("data-y") or "nan") == 2.0
    history.close()
    # ... and rolls it back
    ops.click("#env-production button:has-text('Roll back')")
    ops.wait_for_url(f"{dashboard.url}/deployments")
    assert registry.resolve("pets@production").version == 1
    history = registry.alias_history("pets", "production")
    assert [(e.kind, e.to_version) for e in history] == [
        ("release", 1), ("release", 2), ("rollback", 1)]  # fmt: skip
    wait_until(lambda: environments.served_version(dashboard.production.url) == 1)
    ops.reload()
    assert ops.locator("#env-production .serves").inner_text() == "pets@1"
    rows = ops.locator("#env-production tr.move").all_inner_texts()
    assert rows[0].split("\t")[1:4] == ["rollback", "2", "1"]
    qa.locator("#stage-production", has_text="pets@1").wait_for(timeout=15000)
    for page in (qa, ops):
        page.context.close()


def test_operator_acknowledges_an_alert(dashboard: Dashboard, browser: Any) -> None:
    alert = raise_alert(dashboard, "accuracy-check")
    ops = sign_in(browser, dashboard, "operator", "/alerts?state=open")
    card = ops.locator(f"#alert-{alert.id}")
    assert card.locator(".state").inner_text() == "open"
    card.get_by_label("acknowledgement note").fill("looking into it")
    ops.locator("h1").click()  # focus leaves the field; its text keeps the region from swapping
    rules = [RuleConfig(name="accuracy-check", metric="performance.accuracy", op="<",
                        threshold=0.9)]  # fmt: skip
    seen = AlertStore(dashboard.ws.db).evaluate(rules, {"performance.accuracy": 0.5},
                                                subject="production")  # fmt: skip
    assert not seen.opened  # seen again: the card's count changes
    status = ops.locator("#live-status")
    status.filter(has_text="paused where you are editing").wait_for(timeout=15000)
    assert card.get_by_label("acknowledgement note").input_value() == "looking into it"
    assert "updated" not in status.inner_text()  # the time is outside the aria-live region
    card.locator("button:has-text('Acknowledge')").click()
    ops.wait_for_url(f"{dashboard.url}/alerts?state=open")
    changed = alert_state(dashboard, alert.id)
    assert changed.state == "acknowledged"
    entry = newest_audit(dashboard, "alert.acknowledged")
    assert entry.actor == "olga" and entry.details == {"id": alert.id, "note": "looking into it"}
    ops.goto(f"/alerts/{alert.id}")
    assert ops.locator(f"#alert-{alert.id} .state").inner_text() == "acknowledged"
    assert ops.locator(f"#alert-{alert.id} button:has-text('Acknowledge')").is_disabled()
    handled = ops.locator(f"#alert-{alert.id} .handled").inner_text()
    assert "by olga" in handled and "looking into it" in handled
    ops.context.close()


def test_a_viewer_sees_but_its_approve_is_refused(dashboard: Dashboard, browser: Any) -> None:
    viewer = sign_in(browser, dashboard, "viewer", "/deployments")
    approve = viewer.locator("#env-staging button:has-text('Approve')")
    assert approve.is_disabled()
    assert (
        "may not approve or reject; it takes qa or admin"
        in viewer.locator("#env-staging .why").first.inner_text()
    )
    staged = dashboard.ws.registry.resolve("pets@staging")
    decided, head = gate(dashboard).decision(staged), audit_head(dashboard)
    # the button is only disabled in the page: force it and submit, as a crafted post would
    approve.evaluate("b => b.disabled = false")
    with viewer.expect_response(re.compile(r"/actions/approve$")) as answer:
        approve.click()
    assert answer.value.status == 403
    assert "may not approve or reject" in viewer.locator("p.flash.error").inner_text()
    assert gate(dashboard).decision(staged) == decided
    assert audit_head(dashboard) == head  # not a single entry: nothing happened
    viewer.context.close()


def test_forms_without_their_csrf_token_or_from_elsewhere_are_refused(
    dashboard: Dashboard, browser: Any
) -> None:
    alert = raise_alert(dashboard, "csrf-check")
    ops = sign_in(browser, dashboard, "operator", f"/alerts/{alert.id}")
    head = audit_head(dashboard)
    form = ops.locator(f"#alert-{alert.id} form:has(button:has-text('Resolve'))")
    form.locator("input[name=csrf]").evaluate("i => i.remove()")
    with ops.expect_response(re.compile(r"/actions/resolve$")) as answer:
        form.locator("button").click()
    assert answer.value.status == 403
    assert "CSRF" in ops.locator("p.flash.error").inner_text()
    assert alert_state(dashboard, alert.id).state == "open"
    # the right token, but posted from another site's page: refused on its Origin
    ops.goto(f"/alerts/{alert.id}")
    csrf = ops.locator("input[name=csrf]").first.get_attribute("value")
    answer = ops.context.request.post(
        f"{dashboard.url}/actions/resolve",
        form={"alert": str(alert.id), "csrf": csrf, "back": "/alerts"},
        headers={"Origin": "https://evil.example"},
        max_redirects=0,
    )
    assert answer.status == 403
    assert alert_state(dashboard, alert.id).state == "open"
    assert audit_head(dashboard) == head
    ops.context.close()


def test_charts_draw_the_stores_data_points(dashboard: Dashboard, browser: Any) -> None:
    registry = dashboard.ws.registry
    page = sign_in(browser, dashboard, "viewer")
    chart = page.locator("svg[aria-label='test accuracy per model version'] circle")
    drawn = [(float(c.get_attribute("data-x")), float(c.get_attribute("data-y")))
             for c in chart.all()]  # fmt: skip
    stored = [(float(m.version), m.metrics["accuracy"]) for m in registry.versions("pets")]
    assert len(drawn) == len(stored) == 2
    for (x, y), (version, accuracy) in zip(drawn, stored, strict=True):
        assert x == version and y == pytest.approx(accuracy, abs=1e-5)
    champion = registry.resolve("pets@champion")
    shown = page.locator("#champion-accuracy").inner_text()
    assert shown == f"{champion.metrics['accuracy']:.4f}"
    page.goto("/deployments")
    timeline = page.locator("svg[aria-label='version each environment served over time'] circle")
    points = [(c.get_attribute("data-series"), float(c.get_attribute("data-y")))
              for c in timeline.all()]  # fmt: skip
    expected = [(env, float(e.to_version)) for env in ("staging", "production")
                for e in registry.alias_history("pets", env)]  # fmt: skip
    assert points == expected and len(expected) >= 3
    page.context.close()


def test_a_revoked_token_is_signed_out_at_its_next_request(
    dashboard: Dashboard, browser: Any
) -> None:
    secret, who = dashboard.ws.tokens.create("viewer", "temp")
    dashboard.tokens["temp"] = secret
    page = sign_in(browser, dashboard, "temp", "/audit")
    assert page.locator("header .who").inner_text() == "temp (viewer)"
    assert dashboard.ws.tokens.revoke(who.token_id, actor="ada")
    page.reload()
    assert page.url.startswith(f"{dashboard.url}/login")
    assert "revoked" in page.locator("p.flash.error").inner_text()
    page.context.close()


def test_retrain_now_waits_for_labelled_images_then_runs_in_the_background(
    dashboard: Dashboard, browser: Any
) -> None:
    alert = raise_alert(dashboard, "retrain-check")
    ops = sign_in(browser, dashboard, "operator", f"/alerts/{alert.id}")
    # nothing labelled since the champion: refused before any work, with the reason, on the
    # page, from the CLI and as the alert's action alike
    retrain = ops.locator(f"#alert-{alert.id} button:has-text('Retrain now')")
    why = "no labelled production images since"
    assert retrain.is_disabled() and why in ops.locator(f"#alert-{alert.id} .why").inner_text()
    jobs = ops.locator("#jobs tbody tr:has(td.job-state)").count()
    retrain.evaluate("b => b.disabled = false")
    with ops.expect_response(re.compile(r"/actions/retrain$")) as answer:
        retrain.click()
    assert answer.value.status == 409 and why in ops.locator("p.flash.error").inner_text()
    token, root = dashboard.tokens["operator"], str(dashboard.project.root)
    cli = CliRunner().invoke(
        app, ["alerts", "retrain", str(alert.id), "--token", token, "-C", root]
    )
    assert cli.exit_code == 17 and why in " ".join(cli.output.split()), cli.output
    now = datetime.now(UTC)
    window = MonitorResult("w", "production", now - timedelta(hours=1), now, "pets", 1, {})
    outcome = run_actions(dashboard.ws.actions(), AlertStore(dashboard.ws.db), alert, window,
                          ["retrain"])["retrain"]  # fmt: skip
    assert outcome.startswith(f"failed: StateError: {why}")
    # the park keeper labels what production saw; now the retrain runs, in the background
    store = PredictionStore(dashboard.ws.db)
    with httpx.Client(base_url=dashboard.production.url, timeout=30) as client:
        for i in range(6):
            label, data = render(i, seed=41)
            answer = client.post("/v1/predict", content=data).json()
            store.add_feedback(answer["prediction_id"], label, actor="park-keeper")
    assert dashboard.production.service is not None
    assert dashboard.production.service.predlog is not None
    assert dashboard.production.service.predlog.flush()
    ops.goto(f"/alerts/{alert.id}")
    ops.click(f"#alert-{alert.id} button:has-text('Retrain now')")
    ops.wait_for_url(f"{dashboard.url}/alerts/{alert.id}")
    assert "retrain" in ops.locator(".flash").inner_text()
    assert ops.locator("#jobs tbody tr:has(td.job-state)").count() == jobs + 1
    job = ops.locator("#jobs tbody tr").first
    job.locator(".job-state", has_text=re.compile("^(done|failed)$")).wait_for(timeout=180000)
    cells = job.locator("td").all_inner_texts()  # updated live: the page was not reloaded
    assert cells[1:5] == ["retrain", f"alert {alert.id} (retrain-check)", "olga", "done"]
    assert "+6 labelled production images" in cells[5]
    # the outcome is written on the alert as an automatic action's would be
    assert alert_state(dashboard, alert.id).actions["retrain"] == cells[5]
    entry = newest_audit(dashboard, "alert.action.retrain")
    assert entry.actor == "olga" and entry.details["id"] == alert.id
    # its alias moves (the new champion, the deploy to staging) record olga's token, as her
    # releases do: it was her button (they said "system" and nothing)
    with dashboard.ws.db.session() as s:
        moves = [e for e in entries(s, 200) if e.action == "alias.move" and e.seq > entry.seq - 50]
    ours = {e.subject.split("@")[1]: e.details.get("token") for e in moves if e.actor == "olga"}
    assert ours.get("staging") == ours.get("champion") == dashboard.token_ids["operator"], moves
    ops.context.close()


def test_the_audit_page_filters_by_actor_and_action(dashboard: Dashboard, browser: Any) -> None:
    page = sign_in(browser, dashboard, "viewer", "/audit")
    assert page.locator("#chain").inner_text().startswith("chain verified")
    page.get_by_label("actor").fill("olga")
    page.get_by_label("action").fill("alias")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"/audit\?actor=olga&action=alias&limit=100$"))
    shown = [
        (int(r.locator("td").nth(0).inner_text()), r.locator("td.action").inner_text())
        for r in page.locator("#entries tbody tr").all()
    ]
    with dashboard.ws.db.session() as s:
        stored = [(e.seq, e.action) for e in entries(s, 5000)
                  if e.actor == "olga" and e.action.startswith("alias.")]  # fmt: skip
    assert shown == stored and len(stored) >= 3  # its deploys to staging and its releases
    page.context.close()
