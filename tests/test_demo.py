from __future__ import annotations

from pathlib import Path

import pytest

from kennel.config import GatesConfig
from kennel.demo import MARKER, run_demo


def test_demo_tells_the_whole_story(tmp_path: Path) -> None:
    """The short version of `make demo`: a tiny model, so only the plumbing is asserted here
    (and the majority-class gate, which such a model may not pass, is off); the full run's
    figures are in the README."""
    tiny = GatesConfig(beat_majority=False)
    said: list[object] = []
    summary = run_demo(
        tmp_path / "demo",
        count=120,
        epochs=1,
        traffic=40,
        gates=tiny,
        say=lambda *a, **_k: said.extend(a),
    )
    lines = [line for line in said if isinstance(line, str)]
    assert lines and not [line for line in lines if "{'" in line]  # no raw dicts for people
    assert summary["reingest_same_id"] and summary["audit_ok"] and summary["parity_passed"]
    assert summary["model"] == "pets@1" and summary["certified"]
    phases = {p["phase"]: p for p in summary["phases"]}
    assert phases["day"]["model_version"] == 1 and phases["night"]["model_version"] == 1
    night = phases["night"]
    assert night["drift"] and "image.brightness" in night["drifted_tests"]
    assert any(a.startswith("data-drift") for a in night["alerts"])
    retrained = [p for p in summary["phases"] if any("retrain" in a for a in p["actions"].values())]
    if retrained:  # the accuracy alert fired (by night, or already by day for a 1-epoch model)
        assert phases["next night"]["model_version"] == 2
    assert Path(summary["report"]).read_text().count("<tr>") >= 3
    again = run_demo(
        tmp_path / "demo", count=120, epochs=1, traffic=40, gates=tiny, say=lambda *a, **k: None
    )
    assert again["versions"] == summary["versions"]  # rerunnable, same data versions


def test_demo_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        run_demo(tmp_path, count=60, say=lambda *a, **k: None)
    assert (tmp_path / "precious.txt").exists() and not (tmp_path / MARKER).exists()
