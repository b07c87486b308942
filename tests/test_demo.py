from __future__ import annotations

from pathlib import Path

import pytest

from kennel.demo import MARKER, run_demo


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    summary = run_demo(tmp_path / "demo", count=120, epochs=1, say=lambda *a, **k: None)
    assert summary["reingest_same_id"] and summary["audit_ok"]
    assert summary["rows"] == 320 and summary["moved_split"] == 0
    assert summary["model"] == "pets@1" and summary["parity_passed"]
    assert summary["certified"] and summary["production_version"] == 1
    again = run_demo(tmp_path / "demo", count=120, epochs=1, say=lambda *a, **k: None)
    assert again["versions"] == summary["versions"]  # rerunnable, same data versions


def test_demo_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        run_demo(tmp_path, count=60, say=lambda *a, **k: None)
    assert (tmp_path / "precious.txt").exists() and not (tmp_path / MARKER).exists()
