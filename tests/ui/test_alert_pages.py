"""The Alerts pages over HTTP (no browser, no model: a fresh project): who acted and with what
note, Retrain now on a resolved alert, and the favicon."""

from __future__ import annotations

import re
from pathlib import Path

from kennel.config.monitoring import RuleConfig
from kennel.govern.alerts import AlertStore
from kennel.ui.app import create_app
from kennel.wiring import Workspace
from tests.conftest import make_project
from tests.ui.test_origins import client_of, serving, sign_in


def test_a_resolved_alert_says_who_acted_with_what_note_and_offers_no_retrain(
    tmp_path: Path,
) -> None:
    ws = Workspace(make_project(tmp_path / "p"))
    try:
        token, _ = ws.tokens.create("operator", "olga")
        rules = [RuleConfig(name="acc", metric="performance.accuracy", op="<", threshold=0.9)]
        (alert,) = (
            AlertStore(ws.db)
            .evaluate(rules, {"performance.accuracy": 0.5}, subject="production")
            .opened
        )
        with serving(create_app(ws)) as url, client_of(url) as client:
            sign_in(client, token)
            page = client.get(f"/alerts/{alert.id}").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', page)
            assert csrf is not None
            for action, note in (("ack", "looking <into> it"), ("resolve", "threshold fixed")):
                form = {"alert": str(alert.id), "csrf": csrf[1], "note": note, "back": "/alerts"}
                assert client.post(f"/actions/{action}", data=form).status_code == 303
            card = client.get(f"/alerts/{alert.id}").text
            handled = re.findall(r'<dd class="handled">(.*?)</dd>', card)
            assert len(handled) == 2
            assert "olga" in handled[0] and "looking &lt;into&gt; it" in handled[0]
            assert "olga" in handled[1] and "threshold fixed" in handled[1]
            retrain = re.search(r'<button type="submit" id="([^"]+)"[^>]*>Retrain now', card)
            assert retrain is not None and "disabled" in retrain[0]
            assert f"alert {alert.id} is resolved" in card.split("Retrain now", 1)[1][:400]
            icon = client.get("/favicon.ico")
            assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    finally:
        ws.close()
