"""What the Predictions pages show: a search of the prediction log (the store caps how much one
search may scan and how deep it may page) and one prediction with its probabilities, its
feedback label and its lineage down to the files its model was trained on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from kennel.db.predictions import Feedback, LoggedPrediction, PredictionQuery, PredictionStore
from kennel.db.search import MAX_SPAN, SearchHit
from kennel.errors import NotFoundError, did_you_mean
from kennel.govern.lineage import prediction_lineage
from kennel.ui.query import time_range
from kennel.wiring import Workspace

PAGE = 50  # predictions per page


@dataclass(frozen=True)
class SearchForm:
    """The search as the page's query gave it (strings kept, to refill the form)."""

    since: str = ""
    until: str = ""
    env: str = ""
    camera: str = ""
    label: str = ""
    min_conf: float | None = None
    max_conf: float | None = None
    feedback: str = ""  # yes | no | ""
    page: int = 1

    def query(self, now: datetime) -> PredictionQuery:
        since, until = time_range(self.since, self.until, now=now, default_since="24h",
                                  longest=MAX_SPAN)  # fmt: skip
        return PredictionQuery(
            since=since,
            until=until,
            environment=self.env or None,
            source=self.camera or None,
            label=self.label or None,
            min_confidence=self.min_conf,
            max_confidence=self.max_conf,
            feedback={"yes": True, "no": False}.get(self.feedback),
            offset=(self.page - 1) * PAGE,
            limit=PAGE,
        )

    def link(self, page: int) -> str:
        fields = {k: v for k, v in self.__dict__.items() if v not in ("", None) and k != "page"}
        return "/predictions?" + urlencode({**fields, "page": page})


@dataclass(frozen=True)
class SearchView:
    form: SearchForm
    since: datetime
    until: datetime
    hits: list[SearchHit]
    previous: str | None  # links to the neighbouring pages
    next: str | None
    environments: list[str]
    labels: list[str]


def search(ws: Workspace, form: SearchForm, now: datetime) -> SearchView:
    q = form.query(now)
    store, config = PredictionStore(ws.db), ws.project.config
    if form.env and form.env not in config.environments and not store.logged_in(form.env):
        known = list(config.environments)
        raise NotFoundError(f"no environment {form.env!r}: none in kennel.yaml and no "
                            f"prediction logged there{did_you_mean(form.env, known)}")  # fmt: skip
    hits, more = store.search(q)
    return SearchView(
        form,
        q.since,
        q.until,
        hits,
        form.link(form.page - 1) if form.page > 1 else None,
        form.link(form.page + 1) if more else None,
        list(config.environments),
        list(config.data.labels),
    )


@dataclass(frozen=True)
class Step:
    """One link of the lineage chain: what it is, its name, and what to know about it."""

    kind: str
    name: str
    facts: list[tuple[str, str]]


@dataclass(frozen=True)
class PredictionView:
    prediction: LoggedPrediction
    feedback: Feedback | None
    kept: bool
    probabilities: list[tuple[str, float]]  # highest first
    chain: list[Step]
    files: list[str]  # the first training files
    training_files: int
    lineage_problem: str = ""  # why there is no chain, when there is none


def _chain(lineage: dict[str, Any]) -> list[Step]:
    model = lineage["model"]
    steps = [Step("model version", model["ref"], [
        ("registered", str(model["created_at"])[:19].replace("T", " ") + " UTC"),
        ("by", str(model["created_by"])),
        ("test accuracy", f"{model['metrics'].get('accuracy', float('nan')):.4f}"),
        ("gates", "passed" if model["gates_passed"] else "failed"),
    ])]  # fmt: skip
    run = lineage.get("run")
    if run:
        params = ", ".join(f"{k}={v}" for k, v in sorted(run["params"].items())
                           if isinstance(v, str | int | float))  # fmt: skip
        facts = [("kind", run["kind"]), ("status", run["status"]), ("params", params[:300])]
        if lineage.get("warm_start_from"):
            facts.append(("warm start from", lineage["warm_start_from"]))
        if lineage.get("study"):
            facts.append(("study", f"{lineage['study']['id']} "
                                   f"({len(lineage['study']['trials'])} trials)"))  # fmt: skip
        steps.append(Step("training run", run["id"], facts))
    data = lineage.get("dataset")
    if data:
        for i, version in enumerate(data["ancestry"]):
            kind = "dataset version" if i == 0 else "parent version"
            facts = [("images", str(version["rows"])), ("source", str(version["source"] or "-"))]
            steps.append(Step(kind, version["ref"], facts))
    return steps


def prediction(ws: Workspace, prediction_id: str) -> PredictionView:
    """One prediction (NotFoundError for an unknown id) and its lineage, or why it has none."""
    store = PredictionStore(ws.db)
    p = store.get(prediction_id)
    if p is None:
        raise NotFoundError(f"prediction {prediction_id!r} not found")
    try:
        lineage = prediction_lineage(
            prediction_id, db=ws.db, registry=ws.registry, tracker=ws.tracker,
            catalog=ws.catalog, files_limit=20,
        )  # fmt: skip
        chain, problem = _chain(lineage), ""
    except NotFoundError as exc:  # its model version, run or dataset is gone
        lineage, chain, problem = {}, [], str(exc)
    kept = p.input_sha256 is not None and ws.content.exists(p.input_sha256)
    probabilities = sorted(
        ((str(k), float(v)) for k, v in p.probabilities.items() if isinstance(v, int | float)),
        key=lambda kv: -kv[1],
    )
    data = lineage.get("dataset") or {}
    return PredictionView(p, store.feedback(prediction_id), kept, probabilities, chain,
                          list(data.get("source_files", [])), int(data.get("training_files", 0)),
                          problem)  # fmt: skip
