from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kennel.config import GatesConfig
from kennel.demo import MARKER, run_demo
from kennel.progress import Event


def assert_the_story(summary: dict[str, Any], said: list[Event]) -> None:
    """What every run of the short demo must show, whichever stores it ran on."""
    lines = [event.message for event in said]
    assert {event.phase for event in said} == {"demo"} and all(lines)
    assert not [line for line in lines if "{'" in line]  # no raw dicts for people
    assert summary["ok"]
    assert summary["reingest_same_id"] and summary["audit_ok"] and summary["parity_passed"]
    assert summary["model"] == "pets@1" and summary["certified"]
    phases = {p["phase"]: p for p in summary["phases"]}
    assert phases["day"]["model_version"] == 1 and phases["night"]["model_version"] == 1
    night = phases["night"]
    assert night["drift"] and "image.brightness" in night["drifted_tests"]
    assert any(a.startswith("data-drift") for a in night["alerts"])
    # a 1-epoch model may fall under the accuracy rule by day or by night: the phase where the
    # rule's incident opened is the one whose actions retrained, and then the next night is
    # served by the retrained version (without an incident, no retrain and no next night)
    first = [phases["day"], phases["night"]]
    fired = [p["phase"] for p in first if any(a.startswith("accuracy-drop") for a in p["alerts"])]
    retrained = [p["phase"] for p in first if any("retrain" in a for a in p["actions"].values())]
    assert fired == retrained
    assert (phases["next night"]["model_version"] if retrained else None) == (
        2 if retrained else phases.get("next night")
    )


def test_demo_tells_the_whole_story(tmp_path: Path) -> None:
    """The short version of `make demo`: a tiny model, so only the plumbing is asserted here
    (and the majority-class gate, which such a model may not pass, is off); the full run's
    figures are in the README."""
    tiny = GatesConfig(beat_majority=False)
    said: list[Event] = []
    summary = run_demo(
        tmp_path / "demo",
        count=120,
        epochs=1,
        traffic=40,
        gates=tiny,
        progress=said.append,
    )
    assert_the_story(summary, said)
    assert Path(summary["report"]).read_text().count("<tr>") >= 3
    again = run_demo(tmp_path / "demo", count=120, epochs=1, traffic=40, gates=tiny)
    assert again["versions"] == summary["versions"]  # rerunnable, same data versions


def test_demo_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        run_demo(tmp_path, count=60)
    assert (tmp_path / "precious.txt").exists() and not (tmp_path / MARKER).exists()
