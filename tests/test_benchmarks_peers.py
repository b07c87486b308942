"""benchmarks/peers.py's command line and tables, on a made-up result: the benchmark itself
needs MLflow, DVC and Evidently in scratch venvs and minutes of CPU, so it is not run here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import peers


def result() -> dict[str, Any]:
    stats = {"rps": 92.4, "p50_ms": 9.6, "p99_ms": 30.4, "rounds_rps": [90.0, 92.4, 95.1],
             "cpu_ms": 10.54}  # fmt: skip
    mlflow = {"rps": 70.0, "p50_ms": 13.3, "p99_ms": 28.5, "rounds_rps": [70.0], "cpu_ms": 14.2}
    return {
        "at": "2026-11-29T12:00:00+00:00",
        "machine": {"cpu": "AMD EPYC", "cores": 2},
        "load_before": [0.1, 0.2, 0.3],
        "serving": {
            "model": "efficientnet_lite0, 160 px",
            "images": 200,
            "requests": 500,
            "rounds": 3,
            "mlflow": "3.17.2",
            "mlflow_workers": 1,
            "agreement": "20/20",
            "results": [
                {
                    "concurrency": 1,
                    "kennel": stats,
                    "mlflow": mlflow,
                    "kennel_int8": None,
                    "in_process_fp32": 143.0,
                    "in_process_int8": None,
                    "kennel_over_mlflow": 1.32,
                    "kennel_over_in_process": 0.65,
                    "in_process_fp32_cpu_ms": 8.5,
                    "in_process_int8_cpu_ms": None,
                    "load": [4.51, 6.02],
                }
            ],
            "wall_s": 300.0,
            "load_after": [1.0, 1.0, 1.0],
        },
        "ingest": {
            "images": 100_000,
            "append": 1_000,
            "dvc": "3.67.1",
            "kennel": {"first_s": 69.2, "append_s": 3.1, "append_over_first": 0.0448},
            "dvc_add": {"first_s": 48.3, "append_s": 9.0, "append_over_first": 0.1863},
            "speed_kennel_over_dvc": 0.7,
            "append_speed_kennel_over_dvc": 2.9,
        },
        "drift": {"error": "CalledProcessError: evidently exited with 1"},
    }


def test_defaults_are_the_issues_sizes() -> None:
    args = peers.parse_args([])
    assert args.only == ["serving", "ingest", "drift"]
    assert (args.requests, args.rounds, args.images, args.records) == (500, 3, 100_000, 100_000)
    assert args.concurrency == [1, 8, 32]


def test_parts_and_sizes_are_chosen_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    args = peers.parse_args(["--only", "drift,ingest", "--concurrency", "2,4", "--images", "10"])
    assert args.only == ["drift", "ingest"] and args.concurrency == [2, 4] and args.images == 10
    for bad, why in (
        (["--only", "serving,training"], "unknown part 'training'"),
        (["--requests", "0"], "must be >= 1"),
        (["--concurrency", "1,x"], "not a list of integers"),
    ):
        with pytest.raises(SystemExit) as exited:
            peers.parse_args(bad)
        assert exited.value.code == 2
        assert why in capsys.readouterr().err


def test_tables_show_each_figure_and_ratio() -> None:
    text = peers.render(result())
    assert "| 1 | 92 (9.6 / 30.4) | 70 (13.3 / 28.5) | 1.32x | - | - | 143 | 0.65x |" in text
    assert "| 1 | 4.5 -> 6.0 | 10.54 | - | 14.20 | 8.50 / - |" in text  # CPU per request
    assert "| first 100,000 files | 69.20 | 48.30 | 0.70x |" in text
    assert "| append / first | 4.5% | 18.6% |  |" in text
    assert "failed: CalledProcessError: evidently exited with 1" in text  # one part failing


def test_a_saved_result_renders_without_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "peers.json"
    saved.write_text(json.dumps(result()))
    assert peers.main(["--render", str(saved)]) == 0
    assert "labels agree kennel vs MLflow 20/20" in capsys.readouterr().out
