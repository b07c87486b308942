"""kennel against what a user would pick instead, side by side in one run (issue 17):

    .venv/bin/python benchmarks/peers.py [--only serving,ingest,drift] [--requests 500]
        [--rounds 3] [--images 100000] [--records 100000] [--table]

- serving: ``kennel serve`` vs ``mlflow models serve`` (custom pyfunc, ``--env-manager local``)
  on the same ONNX file (EfficientNet-Lite0, 160 px, trained on the shared photos), the same
  200 real JPEGs and the same client, at each concurrency; kennel's int8 model when the bundle
  keeps one; the in-process batched Predictor (batch 16) as the compute limit, and at batch
  min(c, 16), the most c clients can share (at one client: a batch of one);
- ingest: ``kennel data ingest`` vs ``dvc add`` of the same N files, then a 1 % append;
- drift: kennel's load + analysis of an N-record window (SQLite, and PostgreSQL when
  reachable) vs Evidently's DataDriftPreset on the same numeric columns.

JSON on stdout and the same figures as Markdown tables on stderr (``--table``: the tables on
stdout instead). MLflow, DVC and Evidently are not kennel dependencies: each runs from a
scratch venv with pinned versions under ~/.cache/kennel-peers (``$KENNEL_PEERS_CACHE``),
created on the first run. A smoke run takes a few minutes:
``--requests 100 --rounds 1 --images 2000 --records 5000``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PARTS = ("serving", "ingest", "drift")
PG = "postgresql+psycopg://127.0.0.1:5432/test"


def _parts(text: str) -> list[str]:
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown part {', '.join(unknown) or text!r} (choose from {', '.join(PARTS)})"
        )
    return chosen


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"concurrency must be >= 1: {text!r}")
    return values


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="peers.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        type=_parts,
        default=list(PARTS),
        help="comma-separated parts (default: serving,ingest,drift)",
    )
    parser.add_argument(
        "--requests", type=_positive, default=500, help="requests per round and system (serving)"
    )
    parser.add_argument(
        "--rounds", type=_positive, default=3, help="alternating rounds; the median is reported"
    )
    parser.add_argument(
        "--concurrency",
        type=_ints,
        default=[1, 8, 32],
        help="comma-separated client threads (default: 1,8,32)",
    )
    parser.add_argument(
        "--mlflow-workers",
        type=_positive,
        default=1,
        help="MLflow scoring-server workers (each loads the model)",
    )
    parser.add_argument(
        "--images",
        type=_positive,
        default=100_000,
        help="files to ingest; the append is 1 %% of them",
    )
    parser.add_argument(
        "--records", type=_positive, default=100_000, help="predictions in the monitoring window"
    )
    parser.add_argument("--pg", default=PG, help="PostgreSQL URL for the drift part")
    parser.add_argument("--no-postgres", action="store_true", help="drift on SQLite only")
    parser.add_argument("--workdir", type=Path, help="keep the work files here")
    parser.add_argument(
        "--table", action="store_true", help="print the tables on stdout instead of the JSON"
    )
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only render the tables of a saved result"
    )
    return parser.parse_args(argv)  # fmt: skip


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kennel-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "peers",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_before": _load(),
    }
    try:
        for part in args.only:
            began = time.perf_counter()
            try:
                result[part] = _part(part, args, work / part, say)
            except Exception as exc:  # one peer failing must not lose the others' figures
                traceback.print_exc(file=sys.stderr)
                result[part] = {"error": f"{exc.__class__.__name__}: {exc}"}
            result[part]["wall_s"] = round(time.perf_counter() - began, 1)
            result[part]["load_after"] = _load()
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return result


def _part(part: str, args: argparse.Namespace, work: Path, say: Callable[[str], None]) -> Any:
    # imported here: the CLI (and its test) must not pay for kennel, ONNX Runtime or PyTorch
    if part == "serving":
        from peer_serving import serving

        return serving(work, requests=args.requests, rounds=args.rounds,
                       concurrency=args.concurrency, mlflow_workers=args.mlflow_workers,
                       say=say)  # fmt: skip
    if part == "ingest":
        from peer_ingest import ingest

        return ingest(work, images=args.images, say=say)
    from peer_drift import drift

    return drift(work, records=args.records, pg_url=None if args.no_postgres else args.pg, say=say)


def _lat(s: dict[str, Any] | None) -> str:
    return f"{s['rps']:.0f} ({s['p50_ms']:.1f} / {s['p99_ms']:.1f})" if s else "-"


def _x(v: float | None) -> str:
    return f"{v:.2f}x" if v is not None else "-"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def render(result: dict[str, Any]) -> str:
    m = result.get("machine", {})
    out = [f"peers run {result.get('at', '?')}: {m.get('cpu', '?')}, {m.get('cores', '?')} "
           f"cores; load average before {result.get('load_before')}"]  # fmt: skip
    for part in PARTS:
        if part not in result:
            continue
        section = result[part]
        out += ["", f"## {part} (wall {section.get('wall_s', '?')} s, load average after "
                    f"{section.get('load_after')})", ""]  # fmt: skip
        if "error" in section:
            out.append(f"failed: {section['error']}")
            continue
        out += {"serving": _serving, "ingest": _ingest, "drift": _drift}[part](section)
    return "\n".join(out)


def _serving(s: dict[str, Any]) -> list[str]:
    lines = [f"{s['model']}; {s['images']} photos; {s['rounds']} rounds of {s['requests']} "
             f"requests, median (ratios: median of the per-round ratios); MLflow {s['mlflow']} "
             f"({s['mlflow_workers']} worker); labels agree kennel vs MLflow {s['agreement']}",
             ""]  # fmt: skip
    rows, cpu = [], []
    for r in s["results"]:
        inproc = f"{r['in_process_fp32']:.0f}"
        if r.get("in_process_int8") is not None:
            inproc += f" / {r['in_process_int8']:.0f}"
        ratio = _x(r["kennel_over_in_process"])
        if r.get("kennel_int8_over_in_process_int8") is not None:
            ratio += f" / {_x(r['kennel_int8_over_in_process_int8'])}"
        at_c = "-"
        if r.get("in_process_fp32_at_c") is not None:
            at_c = (f"{r['in_process_fp32_at_c']:.0f} (batch {min(r['concurrency'], 16)}): "
                    f"{_x(r['kennel_over_in_process_at_c'])}")  # fmt: skip
        rows.append([str(r["concurrency"]), _lat(r["kennel"]), _lat(r["mlflow"]),
                     _x(r["kennel_over_mlflow"]), _lat(r.get("kennel_int8")),
                     _x(r.get("kennel_int8_over_mlflow")), inproc, ratio, at_c])  # fmt: skip
        if "load" in r:
            load = r["load"]
            cpu.append([str(r["concurrency"]), f"{load[0]:.1f} -> {load[-1]:.1f}",
                        _ms(r["kennel"]), _ms(r.get("kennel_int8")), _ms(r["mlflow"]),
                        f"{_num(r.get('in_process_fp32_cpu_ms'))} / "
                        f"{_num(r.get('in_process_int8_cpu_ms'))}",
                        _num(r["kennel"].get("client_cpu_ms")),
                        _x(r.get("in_process_ceiling"))])  # fmt: skip
    head = ["concurrency", "kennel req/s (p50 / p99 ms)", "MLflow pyfunc req/s (p50 / p99 ms)",
            "kennel / MLflow", "kennel int8 req/s (p50 / p99 ms)", "int8 / MLflow fp32",
            "in-process batch 16 img/s (fp32 / int8)",
            "service / in-process batched (fp32 / int8)",
            "in-process fp32 at batch min(c, 16) img/s: service / it"]  # fmt: skip
    out = lines + _table(head, rows)
    fsync = [[str(r["concurrency"]), _lat(r["kennel"]), _lat(r.get("kennel_fsync")),
              _x(r.get("kennel_fsync_over_mlflow"))]
             for r in s["results"] if r.get("kennel_fsync")]  # fmt: skip
    if fsync:
        head = ["concurrency", "kennel fp32 (log_sync: false, the default)",
                "kennel fp32, log_sync: true", "log_sync true / MLflow"]  # fmt: skip
        out += ["", *_table(head, fsync)]
    if cpu:
        head = ["concurrency", "load average (1 min)", "kennel CPU ms/req", "kennel int8",
                "MLflow", "in-process CPU ms/img (fp32 / int8)",
                "client CPU ms/req (kennel fp32)",
                "ceiling: in-process / (in-process + client) CPU"]  # fmt: skip
        out += ["", *_table(head, cpu)]
    return out


def _ms(s: dict[str, Any] | None) -> str:
    return _num(s.get("cpu_ms")) if s else "-"


def _num(v: float | None) -> str:
    return f"{v:.2f}" if v is not None else "-"


def _ingest(s: dict[str, Any]) -> list[str]:
    k, d = s["kennel"], s["dvc_add"]
    head = ["step", "kennel data ingest s", f"dvc add s (DVC {s['dvc']})", "kennel speed / dvc"]
    rows = [
        [f"first {s['images']:,} files", f"{k['first_s']:.2f}", f"{d['first_s']:.2f}",
         _x(s["speed_kennel_over_dvc"])],
        [f"append {s['append']:,} (1 %), re-version", f"{k['append_s']:.2f}",
         f"{d['append_s']:.2f}", _x(s["append_speed_kennel_over_dvc"])],
        ["append / first", f"{k['append_over_first']:.1%}", f"{d['append_over_first']:.1%}",
         ""],
    ]  # fmt: skip
    if "append_source_s" in k:  # kennel's own way: the new files as a source of their own
        rows.append([f"append {s['append']:,} as their own folder (kennel only)",
                     f"{k['append_source_s']:.2f} ({k['append_source_over_first']:.1%} of first)",
                     "-", ""])  # fmt: skip
    if "sync_after_s" in k:  # the first ingest again, until what each tool wrote is on disk
        (ks, _), (ds, _) = k["sync_after_s"], d["sync_after_s"]
        rows.append(["first, with a sync after it", f"{k['first_s'] + ks:.2f} ({ks:.2f} sync)",
                     f"{d['first_s'] + ds:.2f} ({ds:.2f} sync)",
                     _x(s["speed_kennel_over_dvc_synced"])])  # fmt: skip
    return _table(head, rows)


def _drift(s: dict[str, Any]) -> list[str]:
    ev = s["evidently_report"]
    head = ["", "load s", "analysis s", "total s", "Evidently / kennel (total)"]
    rows = []
    for name, key, ratio in (
        ("kennel, SQLite", "kennel_sqlite", "evidently_over_kennel_sqlite_total"),
        ("kennel, PostgreSQL", "kennel_postgresql", "evidently_over_kennel_postgresql_total"),
    ):
        f = s[key]
        if "skipped" in f:
            rows.append([name, "-", "-", "-", f"skipped: {f['skipped']}"])
            continue
        rows.append([name, f"{f['load_s']:.3f}", f"{f['analysis_s']:.3f}",
                     f"{f['total_s']:.3f}", _x(s.get(ratio))])  # fmt: skip
    rows.append([f"Evidently {s['evidently']} DataDriftPreset (warm; first run)",
                 f"{ev['frames_s']:.3f} (DataFrames)",
                 f"{ev['report_s']:.3f} ({ev['first_report_s']:.3f})", "", ""])  # fmt: skip
    note = (
        f"{s['records']:,} records; Evidently: {len(ev['columns'])} numeric columns, "
        f"reference rows {_rows(ev['reference_rows'])}; "
        f"Evidently drifted: {', '.join(ev.get('drifted', [])) or 'none'}; "
        f"kennel drifted: {', '.join(s['kennel_sqlite']['drifted']) or 'none'}; "
        f"Evidently / kennel analysis alone {_x(s['evidently_over_kennel_analysis'])}"
    )
    return [*_table(head, rows), "", note]  # fmt: skip


def _rows(rows: dict[str, int] | int) -> str:
    if isinstance(rows, int):
        return str(rows)
    return ", ".join(f"{c} {n}" for c, n in rows.items())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))

    def say(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    result = run(args, say)
    tables = render(result)
    if args.table:
        print(tables)
    else:
        print(json.dumps(result, indent=2))
        print(tables, file=sys.stderr)
    return 1 if any("error" in result[p] for p in args.only) else 0


if __name__ == "__main__":
    sys.exit(main())
