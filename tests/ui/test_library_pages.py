"""The Datasets, Runs and Models pages in a real browser, as a viewer: every number they draw
is the store's (read back here through the library), thumbnails decode, the bundle download's
files hash to what the registry recorded, axe finds nothing serious, and bad ids or values are
4xx pages."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from kennel.db.ingest import IngestStore
from kennel.ingest.validate import QUARANTINED
from kennel.pipeline.lineage import model_lineage
from tests.ui.conftest import Dashboard, axe_problems, sign_in
from tests.ui.more_data import TRIALS, record_study, second_version


@pytest.fixture(scope="module")
def extra(dashboard: Dashboard) -> dict[str, Any]:
    """park v2 (a manifest ingest with a duplicate, a truncated file and a label conflict) and
    a recorded tuning study, added to the shared project."""
    root = dashboard.project.root.parent
    report = second_version(dashboard.ws, root, root / "lake")
    study, trials = record_study(dashboard.ws)
    return {"v2": report.version, "study": study, "trials": trials}


def points(page: Any, title: str) -> list[tuple[str, float, float]]:
    """(series, x, y) of every point of the chart titled ``title``."""
    return [
        (c.get_attribute("data-series"), float(c.get_attribute("data-x")),
         float(c.get_attribute("data-y")))
        for c in page.locator(f"svg[aria-label='{title}'] circle").all()
    ]  # fmt: skip


def bars(page: Any, title: str) -> list[tuple[float, float, int]]:
    return [
        (float(r.get_attribute("data-lo")), float(r.get_attribute("data-hi")),
         int(r.get_attribute("data-count")))
        for r in page.locator(f"svg[aria-label='{title}'] rect").all()
    ]  # fmt: skip


def decoded_sizes(page: Any, selector: str) -> list[tuple[int, int]]:
    """Each image's decoded size, once the browser has decoded it (lazy ones too)."""
    script = (
        "i => { i.loading = 'eager'; "
        "return i.decode().then(() => [i.naturalWidth, i.naturalHeight]); }"
    )
    return [
        (int(w), int(h)) for w, h in (img.evaluate(script) for img in page.locator(selector).all())
    ]


def test_dataset_pages_draw_the_versions_counts_quality_and_images(
    dashboard: Dashboard, browser: Any, extra: dict[str, Any]
) -> None:
    catalog, v2 = dashboard.ws.catalog, extra["v2"]
    # v2 extends whatever park's newest version was (another test may have retrained first)
    v1 = catalog.resolve(f"park@{v2.parent_id}")
    a, b = f"v{v1.seq}", f"v{v2.seq}"
    page = sign_in(browser, dashboard, "viewer", "/datasets")
    assert page.locator("#datasets tbody tr td").first.inner_text() == "park"
    assert axe_problems(page) == []
    page.goto("/datasets/park")
    drawn = points(page, "images per version of park")
    assert [(x, y) for _, x, y in drawn] == [
        (float(v.seq), v.n_rows) for v in catalog.versions("park")
    ]
    assert axe_problems(page) == []

    page.goto(f"/datasets/park/{b}?against={a}")
    assert page.locator("#rows").inner_text() == str(v2.n_rows) == str(v1.n_rows + 17)
    assert f"park {a}" in page.locator("#chain").inner_text()
    for label, per in v2.counts.items():
        for split in ("train", "test"):
            cell = page.locator(f"td[data-label='{label}'][data-split='{split}']")
            assert int(cell.inner_text()) == per.get(split, 0)
    rows = catalog.rows(v2)
    columns = {"brightness": [r.brightness for r in rows], "contrast": [r.contrast for r in rows],
               "sharpness": [r.sharpness for r in rows],
               "side": [min(r.width, r.height) for r in rows]}  # fmt: skip
    titles = {"brightness": "brightness (mean luma, 0-255)", "side": "size (shorter side, px)",
              "contrast": "contrast (luma standard deviation)",
              "sharpness": "sharpness (variance of the Laplacian)"}  # fmt: skip
    for key, values in columns.items():
        counts, edges = np.histogram(np.array(values, dtype=np.float64), bins=20)
        drawn_bins = bars(page, titles[key])
        assert [n for _, _, n in drawn_bins] == counts.tolist()
        assert [lo for lo, _, _ in drawn_bins] == pytest.approx(edges[:-1].tolist(), rel=1e-5)
    diff = catalog.diff(v1, v2)
    assert page.locator("#diff .diff-added strong").inner_text() == str(len(diff.added)) == "17"
    assert page.locator("#diff .diff-removed strong").inner_text() == "0"
    assert page.locator("#diff-rows tr.added").count() == 17
    # exact duplicates: the twin and its copy, with a thumbnail of their content
    twin = next(r.sha256 for r in rows if r.uri.endswith("/cat/again.jpg"))
    group = page.locator(f".dup-group[data-sha256='{twin}'] li").all_inner_texts()
    assert sorted(group) == sorted(r.uri for r in rows if r.sha256 == twin) and len(group) == 2
    # near-duplicates in two splits: the version summary's count and sample, as a warning
    across = v2.summary["near_duplicates_across_splits"]
    sample = v2.summary["near_duplicates_across_splits_sample"]
    assert page.locator("#near-across").count() == (1 if across else 0)
    if across:
        assert page.locator("#near-across").inner_text().startswith(f"{across} of those pairs")
    drawn_pairs = [
        [c.inner_text() for c in r.locator("td").all()]
        for r in page.locator("#near-across-sample tbody tr").all()
    ]
    assert drawn_pairs == [[a, b, str(bits)] for a, b, bits in sample]
    # quarantine: the ingest's own records, a kept image for the label conflict only
    assert v2.ingest_run_id is not None
    stored = IngestStore(dashboard.ws.db).records(v2.ingest_run_id, QUARANTINED, limit=50)
    shown = [(r.locator(".uri").inner_text(), r.locator(".reason").inner_text())
             for r in page.locator("#quarantine tr.quarantined").all()]  # fmt: skip
    assert shown == [(r.uri, r.reason) for r in stored] and len(stored) == 2
    assert page.locator("#quarantine img").count() == 1
    assert axe_problems(page) == []

    # the grid, filtered: the selection, its histogram and its tiles are the manifest's
    page.get_by_label("label").select_option("cat")
    page.get_by_label("split").select_option("test")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(f"**/datasets/park/{b}?label=cat&split=test&slice=&against={a}")
    chosen = [r.sha256 for r in rows if r.label == "cat" and r.split == "test"]
    assert page.locator("#selected strong").inner_text() == str(len(chosen))
    tiles = [t.get_attribute("src") for t in page.locator("#grid img").all()]
    assert sorted(src.removeprefix("/thumbs/") for src in tiles) == sorted(chosen)
    assert sum(n for *_, n in bars(page, titles["brightness"])) == len(chosen)
    sizes = decoded_sizes(page, "#grid img")
    assert len(sizes) == len(chosen) and all(0 < max(w, h) <= 160 for w, h in sizes)
    page.goto(f"/datasets/park/{b}?slice=scenario%3Dnight")
    night = [r for r in rows if json.loads(r.attrs).get("scenario") == "night"]
    assert page.locator("#selected strong").inner_text() == str(len(night)) == "17"
    page.context.close()


def test_runs_pages_draw_studies_trials_and_curves(
    dashboard: Dashboard, browser: Any, extra: dict[str, Any]
) -> None:
    tracker, study, trials = dashboard.ws.tracker, extra["study"], extra["trials"]
    page = sign_in(browser, dashboard, "viewer", "/runs")
    row = page.locator(f"#studies tr.study:has(a[href='/runs?study={study}'])")
    assert row.locator("td").nth(2).inner_text() == "4"
    assert "completed 2, failed 1, pruned 1" in row.inner_text()
    assert axe_problems(page) == []
    page.goto(f"/runs?study={study}")
    drawn = points(page, "best validation accuracy per trial, by status")
    expected = [(status, float(t), max(accs)) for status in ("completed", "pruned")
                for t, (_lr, s, accs) in enumerate(TRIALS) if s == status]  # fmt: skip
    assert drawn == expected
    lrs = {r.get_attribute("data-run"): r.locator("td.param").inner_text()
           for r in page.locator("#runs tr.run").all()}  # fmt: skip
    assert lrs == {run: str(lr) for run, (lr, *_) in zip(trials, TRIALS, strict=True)}
    statuses = [tracker.get(r).status for r in trials]
    assert statuses == [s for _, s, _ in TRIALS]
    assert axe_problems(page) == []
    # tick two trials and compare them: each run's curve is its stored epochs
    for run in trials[:2]:
        page.locator(f"tr[data-run='{run}'] input[type=checkbox]").check()
    page.get_by_role("button", name="Compare selected").click()
    page.wait_for_url(re.compile(r"/runs/compare\?ids=[0-9a-f]{32}&ids=[0-9a-f]{32}$"))
    chosen = [part.removeprefix("ids=") for part in page.url.split("?")[1].split("&")]
    assert sorted(chosen) == sorted(trials[:2])  # newest first, as the table lists them
    drawn = points(page, "validation accuracy per epoch")
    stored = [
        (f"{run[:8]} trial #{trials.index(run)}", float(epoch), values["val_accuracy"])
        for run in chosen
        for epoch, values in tracker.epochs(run).items()
    ]
    assert drawn == stored and len(stored) == 4
    assert "differs" in page.locator("#compare tr.param.differs th").inner_text()
    assert axe_problems(page) == []
    page.goto(f"/runs/{trials[0]}")
    losses = [(x, y) for s, x, y in points(page, "loss per epoch") if s == "validation loss"]
    epochs = tracker.epochs(trials[0])
    assert [x for x, _ in losses] == [float(e) for e in epochs]
    assert [y for _, y in losses] == pytest.approx([v["val_loss"] for v in epochs.values()])
    assert page.locator("#facts .status").inner_text() == "completed"
    assert axe_problems(page) == []
    page.context.close()


def test_model_pages_show_the_report_lineage_and_a_verified_bundle(
    dashboard: Dashboard, browser: Any
) -> None:
    registry = dashboard.ws.registry
    models = registry.versions("pets")
    page = sign_in(browser, dashboard, "viewer", "/models")
    drawn = points(page, "test accuracy and macro F1 per version of pets")
    stored = [(s, float(m.version), m.metrics[k]) for s, k in (("accuracy", "accuracy"),
              ("macro F1", "macro_f1")) for m in models]  # fmt: skip
    assert [(s, x) for s, x, _ in drawn] == [(s, x) for s, x, _ in stored]
    assert [y for *_, y in drawn] == pytest.approx([y for *_, y in stored], abs=1e-5)
    assert axe_problems(page) == []

    model = registry.resolve("pets@1")
    report = registry.read_json(model, "report.json")
    page.goto("/models/pets/1")
    confusion = [[int(c.inner_text()) for c in r.locator("td").all()]
                 for r in page.locator("#confusion tbody tr").all()]  # fmt: skip
    assert confusion == report["confusion"]
    roc = points(page, "ROC curve: true positive rate against false positive rate")
    expected = [(c, x, y) for c, curve in report["curves"].items()
                for x, y in zip(curve["roc"]["fpr"], curve["roc"]["tpr"], strict=True)]  # fmt: skip
    assert [s for s, _, _ in roc] == [s for s, _, _ in expected]
    flat = [v for _, x, y in roc for v in (x, y)]
    assert flat == pytest.approx([v for _, x, y in expected for v in (x, y)], abs=1e-5)
    recall = page.locator("#per-class tr[data-class='dog'] td").nth(1).inner_text()
    assert recall == f"{report['per_class']['dog']['recall']:.4f}"
    # reliability bins: their weighted gaps are the report's expected calibration error
    cells = [[c.inner_text() for c in r.locator("td").all()]
             for r in page.locator("#reliability tbody tr").all()]  # fmt: skip
    total = sum(int(c[1]) for c in cells)
    ece = sum(int(c[1]) / total * abs(float(c[3]) - float(c[2])) for c in cells)
    assert total == report["n"] and ece == pytest.approx(
        report["calibration"]["ece_after"], abs=1e-3
    )
    worst = page.locator("#worst img")
    assert [w.get_attribute("src") for w in worst.all()] == [
        f"/thumbs/{w['sha256']}" for w in report["worst"]]  # fmt: skip
    assert all(0 < max(size) <= 160 for size in decoded_sizes(page, "#worst img"))
    lineage = model_lineage("pets@1", registry=registry, tracker=dashboard.ws.tracker,
                            catalog=dashboard.ws.catalog)  # fmt: skip
    assert page.locator("#source-files li").all_inner_texts() == lineage["dataset"]["source_files"]
    assert f"{lineage['dataset']['training_files']} training files" == page.locator(
        "#training-files").inner_text()  # fmt: skip
    assert page.locator("#card").inner_text().strip() == registry.read_file(
        model, "MODEL_CARD.md").decode().strip()  # fmt: skip
    assert axe_problems(page) == []
    # the bundle as a zip: every file is the registry's, byte for byte
    with page.expect_download() as started:
        page.click("#download")
    archive = zipfile.ZipFile(io.BytesIO(Path(started.value.path()).read_bytes()))
    hashes = {n.removeprefix("pets-1/"): hashlib.sha256(archive.read(n)).hexdigest()
              for n in archive.namelist()}  # fmt: skip
    assert hashes == model.files and len(hashes) >= 5

    page.goto("/models/compare?a=pets@1&b=pets@2")
    other = registry.resolve("pets@2")
    row = page.locator("#compare-metrics tr[data-metric='accuracy'] td").all_inner_texts()
    a, b = model.metrics["accuracy"], other.metrics["accuracy"]
    assert row == [f"{a:.4f}", f"{b:.4f}", f"{b - a:+.4f}"]
    assert axe_problems(page) == []
    # thumbnails decode outside a page too, and are JPEG no larger than asked
    answer = page.context.request.get(f"{dashboard.url}/thumbs/{report['worst'][0]['sha256']}")
    image = Image.open(io.BytesIO(answer.body()))
    assert answer.headers["content-type"] == "image/jpeg" and image.format == "JPEG"
    assert max(image.size) <= 160
    page.context.close()


BAD = [
    ("/datasets/nope", 404), ("/datasets/park/v99", 404), ("/datasets/park/zz", 400),
    ("/datasets/bad%20name/v1", 400), ("/datasets/park/v1?split=sideways", 400),
    ("/datasets/park/v1?slice=nocolumn%3Dx", 400), ("/datasets/park/v1?slice=x", 400),
    ("/datasets/park/v1?page=0", 400), ("/datasets/park/v1?page=abc", 400),
    ("/datasets/park/v1?page=999", 404), ("/datasets/park/v1?against=v42", 404),
    ("/datasets/park/v1?label=" + "x" * 200, 400),
    ("/runs?status=bogus", 400), ("/runs?study=nosuch", 404), ("/runs/abc", 400),
    ("/runs/" + "0" * 32, 404), ("/runs/compare", 400), ("/runs/compare?ids=zz", 400),
    ("/runs/compare?ids=" + ",".join(f"{i:032x}" for i in range(9)), 400),
    ("/runs/compare?ids=" + "0" * 32, 404),
    ("/models/nope", 404), ("/models/pets/99", 404), ("/models/pets/99/bundle.zip", 404),
    ("/models/compare?a=pets@1", 400), ("/models/compare?a=pets@1&b=nope@1", 404),
    ("/models/compare?a=bad%20name&b=pets@1", 400),
    ("/thumbs/" + "0" * 64, 404), ("/thumbs/xyz", 400),
]  # fmt: skip


def test_bad_ids_and_values_are_4xx_pages(dashboard: Dashboard, browser: Any) -> None:
    page = sign_in(browser, dashboard, "viewer", "/models")
    model = dashboard.ws.registry.resolve("pets@1")
    version = dashboard.ws.catalog.resolve("park@v1")
    # blobs of the content store that are not ingested images are never drawn
    others = [f"/thumbs/{model.files['model.onnx']}", f"/thumbs/{version.manifest_sha256}"]
    for path, status in [*BAD, *((p, 404) for p in others)]:
        answer = page.goto(path)
        assert answer.status == status, path
        assert page.locator("h1").inner_text().startswith(str(status)), path
        assert "Traceback" not in page.content()
    # signed out, a thumbnail is not served either
    stranger = browser.new_context(base_url=dashboard.url)
    sha = dashboard.ws.catalog.rows(version)[0].sha256
    answer = stranger.request.get(f"/thumbs/{sha}", max_redirects=0)
    assert answer.status == 303 and answer.headers["location"].startswith("/login")
    stranger.close()
    page.context.close()
