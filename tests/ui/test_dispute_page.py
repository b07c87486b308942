"""A label dispute on the dataset page, in a real browser: the picture, the labels it was
offered under, and a Settle form that a role which may label uses and a viewer cannot."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from kennel.datasets.synth import generate
from kennel.db.ingest import IngestStore
from tests.ui.conftest import Dashboard, axe_problems, sign_in


def test_qa_settles_a_label_dispute_from_the_dataset_page(
    dashboard: Dashboard, browser: Any, tmp_path: Path
) -> None:
    ws = dashboard.ws  # a dataset named after park: the Datasets page lists park first
    lake = tmp_path / "yard"
    generate(lake, 6, seed=21)
    cat = sorted((lake / "cat").glob("*.jpg"))[0]
    (lake / "dog").mkdir(exist_ok=True)
    shutil.copy(cat, lake / "dog" / "same-picture.jpg")  # the same bytes, labelled dog too
    report = ws.ingestor().run(ws.source(str(lake)), "yard")
    assert report.quarantined == {"label conflict": 2}
    (sha,) = IngestStore(ws.db).disputes("yard")
    row_of = f"#disputes tr.dispute[data-sha256='{sha}']"

    viewer = sign_in(browser, dashboard, "viewer", "/datasets/yard")
    row = viewer.locator(row_of)
    assert row.locator(".offered").inner_text() == "cat, dog"
    assert row.locator("img").evaluate("i => i.decode().then(() => i.naturalWidth)") > 0
    assert row.get_by_role("button", name="Settle").is_disabled()
    assert "may not settle labels; it takes operator or qa or admin" in row.inner_text()
    # disabled in the page only: forced and posted, as a crafted request would be, it is refused
    row.locator("select").evaluate("s => s.disabled = false")
    row.get_by_role("button", name="Settle").evaluate("b => b.disabled = false")
    with viewer.expect_response(re.compile(r"/actions/settle$")) as answer:
        row.get_by_role("button", name="Settle").click()
    assert answer.value.status == 403
    assert "may not settle labels" in viewer.locator("p.flash.error").inner_text()
    assert IngestStore(ws.db).disputes("yard")[sha].settled_label is None
    viewer.context.close()

    qa = sign_in(browser, dashboard, "qa", "/datasets/yard")
    row = qa.locator(row_of)
    row.get_by_label(f"label for {sha[:12]}").select_option("dog")
    row.get_by_role("button", name="Settle").click()
    qa.wait_for_url(f"{dashboard.url}/datasets/yard")
    assert f"sha256:{sha[:12]} in yard settled as 'dog'" in qa.locator("p.flash.ok").inner_text()
    assert "settled as dog by quinn" in qa.locator(row_of).locator(".settled").inner_text()
    settled = IngestStore(ws.db).disputes("yard")[sha]
    assert (settled.settled_label, settled.settled_by) == ("dog", "quinn")
    assert axe_problems(qa) == []
    qa.context.close()

    # the next ingest of the folder takes the picture as a dog, and the cat copy stays out
    again = ws.ingestor().run(ws.source(str(lake)), "yard")
    assert again.added == 1 and again.quarantined == {"label conflict": 1}
    rows = ws.catalog.rows(again.version)
    assert [r.label for r in rows if r.sha256 == sha] == ["dog"]
