"""The Runs pages: tuning studies and their trials (parameters, status, pruned), one run's
per-epoch curves, and several runs on one chart; read through the run store (runs are tracked
by ``kennel.train.tracking``: a study's trials and the final run trained from its best share
the study id)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import Response

from kennel.db import aware
from kennel.db.runs import Run, RunStore
from kennel.errors import ConfigError, NotFoundError
from kennel.ui.app import Dashboard, signed_in
from kennel.ui.paging import Endpoint, Register, linker, pages_of
from kennel.ui.routes import LIVE, View, show

PER_PAGE = 50
STUDIES = 20  # newest studies listed on /runs
COMPARE = 8  # runs on one chart at most
RUN_ID = re.compile(r"^[0-9a-f]{32}\Z")
STATUSES = ("running", "completed", "pruned", "failed", "interrupted")
CURVES = {"val_accuracy": "validation accuracy", "val_loss": "validation loss",
          "train_loss": "training loss"}  # fmt: skip

Kind = Annotated[str, Query(pattern="^(trial|final)?$")]
Status = Annotated[str, Query(pattern="^(running|completed|pruned|failed|interrupted)?$")]
Study = Annotated[str, Query(pattern="^[0-9A-Za-z_-]{0,64}$")]
RunId = Annotated[str, Path(pattern="^[0-9a-f]{32}$")]
Ids = Annotated[list[str], Query(max_length=COMPARE * 4)]
Page = Annotated[int, Query(ge=1, le=1_000_000)]
Series = dict[str, list[tuple[float | datetime, float | None]]]


def varying(runs: list[Run]) -> list[str]:
    """The parameters whose values differ between ``runs`` (what a search varied, among the
    runs a page lists)."""
    keys = sorted({k for r in runs for k in r.params})
    return [k for k in keys if len({repr(r.params.get(k)) for r in runs}) > 1]


def label(run: Run) -> str:
    trial = f" #{run.trial_number}" if run.trial_number is not None else ""
    return f"{run.id[:8]} {run.kind}{trial}"


def curves(epochs: dict[str, dict[int, dict[str, float]]]) -> dict[str, Series]:
    """Metric -> {run label: [(epoch, value)]}, for the metrics CURVES names."""
    return {
        metric: {
            who: [(float(e), values[metric]) for e, values in by_epoch.items() if metric in values]
            for who, by_epoch in epochs.items()
        }
        for metric in CURVES
    }


def compare_ids(ids: list[str]) -> list[str]:
    """``ids=a,b`` or ``ids=a&ids=b`` as distinct run ids, in order; at most COMPARE."""
    found = list(dict.fromkeys(i.strip() for part in ids for i in part.split(",") if i.strip()))
    if not found:
        raise ConfigError("name the runs to compare: ?ids=RUN,RUN")
    if len(found) > COMPARE:
        raise ConfigError(f"{len(found)} runs named: at most {COMPARE} fit on one chart")
    bad = [i for i in found if not RUN_ID.match(i)]
    if bad:
        raise ConfigError(f"not a run id: {bad[0][:40]!r} (32 hex digits)")
    return found


def install(app: FastAPI, ui: Dashboard, get: Register) -> None:
    ws = ui.ws
    store = RunStore(ws.db)

    def live(path: str) -> Callable[[Endpoint], Endpoint]:
        """A page whose state changes while a search runs: also served as /api/live JSON."""

        def register(endpoint: Endpoint) -> Endpoint:
            get(path)(endpoint)
            return get(LIVE + path)(endpoint)

        return register

    def run_or_404(run_id: str) -> Run:
        run = store.get(run_id)
        if run is None:
            raise NotFoundError(f"run {run_id} not found")
        return run

    @get("/runs")
    def runs(
        request: Request,
        study: Study = "",
        kind: Kind = "",
        status: Status = "",
        page: Page = 1,
    ) -> Response:
        session, who = signed_in(request, ui)
        filters = {"study": study or None, "kind": kind or None, "status": status or None}
        total = store.count(**filters)
        pages = pages_of(total, PER_PAGE, page, "these runs")
        shown = store.page(limit=PER_PAGE, offset=(page - 1) * PER_PAGE, **filters)
        context: dict[str, Any] = {"study": study, "kind": kind, "status_filter": status,
                                   "statuses": STATUSES, "runs": shown, "total": total,
                                   "page": page, "pages": pages, "params": [], "trials": {},
                                   "studies": [], "studies_total": 0}  # fmt: skip
        if study:
            trials = store.trial_values(study, "val_accuracy")
            if not trials and not total:
                raise NotFoundError(f"no study {study!r}")
            by_status = {
                s: [(float(t.trial or 0), t.best) for t in trials if t.status == s]
                for s in STATUSES
            }
            context["trials"] = {
                s: points
                for s, points in by_status.items()
                if any(y is not None for _, y in points)
            }
            context["params"] = varying([r for r in shown if r.kind == "trial"])
        elif page == 1:
            context["studies"] = store.studies(limit=STUDIES)
            context["studies_total"] = store.count_studies()
        query = {"study": study, "kind": kind, "status": status}
        context["href"] = linker("/runs", {**query, "page": page})
        view = View("ui/runs.html", f"Study {study}" if study else "Runs", context)
        return show(request, session, who, view)

    @get("/runs/compare")
    def compare(request: Request, ids: Ids) -> Response:
        session, who = signed_in(request, ui)
        chosen = [run_or_404(i) for i in compare_ids(ids)]
        epochs = {label(r): ws.tracker.epochs(r.id) for r in chosen}
        keys = sorted({k for r in chosen for k in r.params})
        context = {"runs": chosen, "curves": curves(epochs), "titles": CURVES, "keys": keys,
                   "differs": set(varying(chosen))}  # fmt: skip
        return show(request, session, who, View("ui/runs_compare.html", "Compare runs", context))

    @live("/runs/{run_id}")
    def run(request: Request, run_id: RunId) -> Response:
        session, who = signed_in(request, ui)
        one = run_or_404(run_id)
        epochs = ws.tracker.epochs(run_id)
        series = curves({"this run": epochs})
        context = {
            "r": one,
            "epochs": epochs,
            "metric_names": sorted({k for v in epochs.values() for k in v}),
            "curves": {m: s["this run"] for m, s in series.items()},
            "titles": CURVES,
            "finished": aware(one.finished_at) if one.finished_at else None,
            "scalars": {k: v for k, v in one.metrics.items() if isinstance(v, int | float | str)},
        }
        view = View("ui/run.html", f"Run {run_id[:12]}", context, {"live-run": "ui/_run.html"})
        return show(request, session, who, view)
