"""Monitoring and Predictions in a real browser, over the session's dashboard with a park's
recent past written through the stores (tests/ui/history.py) and real predictions served by
production: the charts hold the store's numbers, thresholds and alerts; a search lists what the
store finds; one prediction shows its picture, saliency, feedback and lineage; bad input is a
4xx page. Also makes the README's screenshots (into docs/screenshots/ when
KENNEL_SCREENSHOTS=1, else into a temporary folder)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from PIL import Image

from kennel.datasets.synth import render
from kennel.db.deployments import DeploymentStore
from kennel.db.monitoring import MonitorRun, MonitorRunStore
from kennel.db.predictions import PredictionQuery, PredictionStore
from kennel.db.runs import RunStore
from kennel.db.telemetry import TelemetryStore
from kennel.govern.lineage import prediction_lineage
from kennel.ui.buckets import grid
from kennel.ui.monitoring import BUCKETS
from tests.ui.conftest import Dashboard, axe_problems, sign_in
from tests.ui.history import History, populate
from tests.ui.more_data import record_study, second_version

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@dataclass
class Observed:
    dash: Dashboard
    history: History
    kept: list[str]  # predictions served by production, their inputs kept
    since: datetime  # a fixed time range that holds the whole history
    until: datetime

    @property
    def range(self) -> str:
        return urlencode({"since": self.since.isoformat(), "until": self.until.isoformat()})


@pytest.fixture(scope="module")
def observed(dashboard: Dashboard) -> Observed:
    ws = dashboard.ws
    history = populate(ws, windows=24, predictions=480, feedback_every=8)
    kept = []
    with httpx.Client(base_url=dashboard.production.url, timeout=30) as client:
        for i in range(3):
            _label, data = render(i, seed=23)
            answer = client.post(
                "/v1/predict", content=data, headers={"x-kennel-source": "cam-gate"}
            )
            kept.append(answer.json()["prediction_id"])
    assert dashboard.production.service is not None
    assert dashboard.production.service.predlog is not None
    assert dashboard.production.service.predlog.flush()
    until = datetime.now(UTC) + timedelta(minutes=5)
    return Observed(dashboard, history, kept, history.since - timedelta(minutes=5), until)


def points(page: Any, chart: str, series: str) -> list[tuple[str, float]]:
    circles = page.locator(f"svg[aria-label='{chart}'] circle[data-series='{series}']").all()
    return [(c.get_attribute("data-x"), float(c.get_attribute("data-y"))) for c in circles]


def test_monitoring_charts_hold_the_stores_windows_thresholds_and_alerts(
    observed: Observed, browser: Any
) -> None:
    ws, h = observed.dash.ws, observed.history
    page = sign_in(browser, observed.dash, "viewer", "/monitoring")
    page.goto(f"/monitoring?env=production&{observed.range}")
    since, until = observed.since, observed.until
    runs = MonitorRunStore(ws.db).between("production", since=since, until=until)
    assert len(runs) >= 24
    accuracy = "accuracy: measured on feedback labels and estimated without"
    pairs = (("measured", "performance.accuracy"),
             ("estimated (label-free)", "performance.estimated_accuracy"))  # fmt: skip
    for series, metric in pairs:
        drawn = points(page, accuracy, series)
        stored = [
            (r.until.isoformat(timespec="seconds"), r.metrics[metric])
            for r in runs
            if metric in r.metrics
        ]
        assert [x for x, _ in drawn] == [x for x, _ in stored]
        assert [y for _, y in drawn] == pytest.approx([y for _, y in stored], abs=1e-5)
    ratio = points(page, "predicted share / true share per class (1 = no bias)", "dog")
    assert [y for _, y in ratio] == pytest.approx(
        [r.metrics["fairness.predicted_rate_ratio.dog"] for r in runs], abs=1e-5
    )
    assert max(y for _, y in ratio[-5:]) > 1.3  # the night: biased toward dogs
    recall = points(page, "recall per class (measured)", "cat")
    assert [y for _, y in recall] == pytest.approx(
        [r.metrics["performance.recall.cat"] for r in runs], abs=1e-5
    )
    # thresholds: the rule on accuracy, "no bias" at 1, drift's min_psi from kennel.yaml
    config = ws.project.config.monitor
    rules = {(f"rule {r.name} ({r.metric} {r.op} {r.threshold:g})", r.threshold)
             for r in config.rules if r.metric.startswith("performance.")}  # fmt: skip
    lines = page.locator(f"svg[aria-label='{accuracy}'] line.threshold").evaluate_all(
        "ls => ls.map(l => [l.dataset.label, Number(l.dataset.threshold)])"
    )
    assert {(label, value) for label, value in lines} == rules and rules
    psi = page.locator("svg[aria-label='drift: image.brightness, PSI']")
    assert float(psi.locator("line.threshold").get_attribute("data-threshold")) == config.min_psi
    assert [y for _, y in points(page, "drift: image.brightness, PSI", "PSI")] == pytest.approx(
        [r.metrics["drift.image.brightness.psi"] for r in runs], abs=1e-5
    )
    # the alerts the night raised, as markers on the time axis of every chart
    markers = page.locator(f"svg[aria-label='{accuracy}'] line.marker")
    labels = " ".join(markers.evaluate_all("ls => ls.map(l => l.dataset.label)"))
    assert h.alerts and all(f"alert {a.id}: {a.rule}" in labels for a in h.alerts)
    # requests per bucket and telemetry means, as the database aggregated them
    g = grid(since, until, BUCKETS)
    traffic = PredictionStore(ws.db).traffic(
        "production", since=g.start, until=g.at(g.count), buckets=g.count
    )
    drawn = points(page, "requests per minute (prediction log)", "requests per minute")
    assert [y for _, y in drawn] == pytest.approx([b.per_minute for b in traffic], rel=1e-4)
    assert sum(b.requests for b in traffic) >= h.predictions
    series = TelemetryStore(ws.db).series(since=g.start, until=g.at(g.count), buckets=g.count)
    temperature = [p for p in series if p.metric == "temperature" and p.source == "cam-pond"]
    drawn = points(page, "temperature (mean per bucket)", "cam-pond")
    assert [y for _, y in drawn] == pytest.approx([p.mean for p in temperature], abs=1e-4)
    assert axe_problems(page) == []
    page.context.close()


def test_monitoring_updates_live_without_a_reload(observed: Observed, browser: Any) -> None:
    page = sign_in(browser, observed.dash, "viewer", "/monitoring")
    before = int(page.locator("#m-summary .n").inner_text())
    now = datetime.now(UTC)
    run = MonitorRun("live-check", now, "production", now - timedelta(minutes=30), now, "pets",
                     1, [1], {"window.n": 9.0, "performance.accuracy": 0.4321}, None)  # fmt: skip
    MonitorRunStore(observed.dash.ws.db).add(run, actor="test", n=9)
    chart = "accuracy: measured on feedback labels and estimated without"
    page.locator(f"svg[aria-label='{chart}'] circle[data-y='0.4321']").wait_for(timeout=15000)
    assert int(page.locator("#m-summary .n").inner_text()) == before + 1
    assert page.url == f"{observed.dash.url}/monitoring"
    page.context.close()


def test_a_search_lists_what_the_store_finds_page_by_page(observed: Observed, browser: Any) -> None:
    page = sign_in(browser, observed.dash, "viewer", "/predictions")
    page.get_by_label("since").fill(observed.since.isoformat())
    page.get_by_label("until").fill(observed.until.isoformat())
    page.get_by_label("feedback").select_option("yes")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/predictions?*feedback=yes*")
    store = PredictionStore(observed.dash.ws.db)
    query = PredictionQuery(observed.since, observed.until, feedback=True, limit=50)
    first, more = store.search(query)
    assert more and len(first) == 50  # 60 labelled: two pages

    def shown() -> list[str]:
        links = page.locator("#hits tbody a").evaluate_all("as => as.map(a => a.pathname)")
        return [link.rsplit("/", 1)[1] for link in links]

    assert shown() == [hit.id for hit in first]
    verdicts = page.locator("#hits tbody td .ok, #hits tbody td .bad").all_inner_texts()
    assert len(verdicts) == 50 and set(verdicts) <= {"right", "wrong"}
    assert axe_problems(page) == []
    page.click("a[rel=next]")
    second, more = store.search(PredictionQuery(query.since, query.until, feedback=True, offset=50))
    assert shown() == [hit.id for hit in second] and not more
    assert page.locator("a[rel=next]").count() == 0
    page.get_by_label("predicted").select_option("dog")
    page.get_by_label("confidence from").fill("0.9")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**label=dog**")
    dogs, _ = store.search(PredictionQuery(query.since, query.until, feedback=True, label="dog",
                                           min_confidence=0.9))  # fmt: skip
    assert shown() == [hit.id for hit in dogs]
    page.context.close()


def test_one_prediction_shows_its_input_saliency_feedback_and_lineage(
    observed: Observed, browser: Any
) -> None:
    ws = observed.dash.ws
    kept = observed.kept[0]
    page = sign_in(browser, observed.dash, "viewer", f"/predictions/{kept}")
    stored = PredictionStore(ws.db).get(kept)
    assert stored is not None and stored.input_sha256 is not None
    rows = page.locator("#probabilities tbody tr").all()
    drawn = {r.locator("td").nth(0).inner_text(): float(r.locator("td").nth(1).inner_text())
             for r in rows}  # fmt: skip
    assert drawn == pytest.approx(stored.probabilities, abs=1e-4)
    for image, side in (("#input", 200), ("#saliency", 256)):
        page.wait_for_function(f"document.querySelector('{image}').complete", timeout=60000)
        width = page.locator(image).evaluate("i => i.naturalWidth")
        assert width == side, image  # decoded and drawn by the dashboard, by the prediction's id
    lineage = prediction_lineage(kept, db=ws.db, registry=ws.registry, tracker=ws.tracker,
                                 catalog=ws.catalog)  # fmt: skip
    chain = page.locator("#lineage").inner_text()
    assert stored.ref in chain and lineage["run"]["id"] in chain
    assert lineage["dataset"]["version"]["ref"] in chain
    assert int(page.locator("#training-files").inner_text()) == lineage["dataset"]["training_files"]
    files = page.locator("#source-files li").all_inner_texts()
    assert files == lineage["dataset"]["source_files"][:20] and files
    assert axe_problems(page) == []
    # a prediction of the history whose true label came back (its input not kept)
    store, h = PredictionStore(ws.db), observed.history
    hits, _ = store.search(PredictionQuery(h.since, h.until, source="cam-pond", feedback=True))
    page.goto(f"/predictions/{hits[0].id}")
    feedback = store.feedback(hits[0].id)
    assert feedback is not None
    assert page.locator("#feedback").inner_text().startswith(f"{feedback.label} ")
    assert "park-keeper" in page.locator("#feedback").inner_text()
    # every reason an input can be missing, not only keep_inputs (a frame of kennel watch
    # was said to be unkept for keep_inputs while the service kept its inputs)
    assert (
        "was not kept (serve.keep_inputs was off, the disk was short"
        in page.locator("main").inner_text()
    )
    assert "a frame of kennel watch" in page.locator("main").inner_text()
    page.context.close()


def test_deployments_lists_the_certification_history(observed: Observed, browser: Any) -> None:
    page = sign_in(browser, observed.dash, "viewer", "/deployments")
    rows = [
        r.locator("td").all_inner_texts() for r in page.locator("#certifications tbody tr").all()
    ]
    history = DeploymentStore(observed.dash.ws.db).certification_history("pets", limit=10)
    assert len(history) >= 2  # pets@1 and pets@2, certified in staging
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (str(c.version), c.environment, "passed" if c.passed else "failed") for c in history
    ]
    page.context.close()


def test_bad_input_on_these_pages_is_a_clear_4xx_page(observed: Observed, browser: Any) -> None:
    h = observed.history  # its predictions were written without their inputs
    found, _ = PredictionStore(observed.dash.ws.db).search(
        PredictionQuery(h.since, h.until, source="cam-pond", limit=1)
    )
    unkept = found[0].id
    cases = {
        "/predictions?since=60d": (400, "at most 31 days"),
        "/predictions?since=2024-01-01&until=2024-03-01": (400, "at most 31 days"),
        "/predictions?since=yesterday": (400, "expected a span"),
        "/predictions?until=2001-01-01": (400, "must come before"),
        "/predictions?min_conf=abc": (400, "a number from 0 to 1"),
        "/predictions?max_conf=1.5": (400, "a number from 0 to 1"),
        "/predictions?min_conf=0.9&max_conf=0.2": (400, "min_conf is above max_conf"),
        "/predictions?page=0": (400, "page"),
        "/predictions?page=500": (400, "10,000 predictions deep"),
        "/predictions?feedback=maybe": (400, "feedback"),
        "/predictions/no-such-prediction": (404, "not found"),
        "/predictions/bad%20id": (400, "prediction_id"),
        f"/predictions/{unkept}/input.png": (404, "was not kept"),
        f"/predictions/{unkept}/saliency.png": (404, "was not kept"),
        "/predictions/no-such-prediction/saliency.png": (404, "not found"),
        "/monitoring?env=nowhere": (404, "no environment 'nowhere'"),
        "/monitoring?since=400d": (400, "at most 92 days"),
        "/monitoring?since=junk": (400, "expected a span"),
        "/api/live/monitoring?since=999999d": (400, "days back"),
    }
    page = sign_in(browser, observed.dash, "viewer", "/predictions")
    for path, (status, words) in cases.items():
        answer = page.goto(path)
        assert answer is not None and answer.status == status, path
        assert words in page.locator("p.flash.error").inner_text(), path
    page.context.close()


def library_pages(dash: Dashboard) -> dict[str, str]:
    """One dataset version (diffed against its parent), one tuning study and one model version,
    for the screenshots; park gets its second version and the runs a four-trial study first,
    unless the Datasets and Runs tests added them already."""
    ws = dash.ws
    newest = ws.catalog.resolve("park@latest")
    if newest.parent_id is None:
        root = dash.project.root.parent
        newest = second_version(ws, root, root / "lake").version
    study = next((s.id for s in RunStore(ws.db).studies(limit=20) if s.trials >= 4), None)
    if study is None:
        study, _trials = record_study(ws)
    parent = ws.catalog.resolve(f"park@{newest.parent_id}")
    return {"dataset": f"/datasets/park/v{newest.seq}?against=v{parent.seq}",
            "study": f"/runs?study={study}", "model": "/models/pets/2"}  # fmt: skip


def test_screenshots_of_every_main_page(observed: Observed, browser: Any, tmp_path: Path) -> None:
    """docs/screenshots/<page>.png for the README with KENNEL_SCREENSHOTS=1 (run this test
    alone, on a fresh session); otherwise into a temporary folder, so CI checks that they can
    be made without rewriting tracked files."""
    out = SCREENSHOTS if os.environ.get("KENNEL_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(
        base_url=observed.dash.url, viewport={"width": 1280, "height": 800}
    )
    page = context.new_page()
    page.goto("/login?next=/")
    page.fill("#token", observed.dash.tokens["qa"])
    page.click("form.filters button[type=submit]")
    page.wait_for_url(f"{observed.dash.url}/")
    nav = page.locator("header nav a:not(.brand)").evaluate_all("as => as.map(a => a.pathname)")
    shots = {("overview" if path == "/" else path.strip("/")): path for path in nav}
    shots["prediction"] = f"/predictions/{observed.kept[0]}"
    shots["monitoring"] = f"/monitoring?{observed.range}"
    shots["predictions"] = f"/predictions?{observed.range}&env=production&feedback=yes"
    shots.update(library_pages(observed.dash))
    for name, path in shots.items():
        page.goto(path)
        if name == "prediction":
            page.wait_for_function("document.querySelector('#saliency').complete", timeout=60000)
        shot = Image.open(io.BytesIO(page.screenshot()))
        assert shot.size == (1280, 800)
        small = shot.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        small.save(out / f"{name}.png", optimize=True)
        assert (out / f"{name}.png").stat().st_size < 250_000, name
    assert {"overview", "monitoring", "predictions", "prediction", "alerts", "audit", "datasets",
            "dataset", "runs", "study", "models", "model"} <= set(shots)  # fmt: skip
    context.close()
