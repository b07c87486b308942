"""The pages that watch production: Monitoring (live) and Predictions (a search, one
prediction, and its two pictures, served by the prediction's id)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import Response

from kennel.errors import ConfigError, NotFoundError, did_you_mean
from kennel.serve.diskroom import NOT_KEPT
from kennel.ui import images, monitoring, predictions
from kennel.ui.app import Dashboard, signed_in
from kennel.ui.buckets import BucketCache
from kennel.ui.query import Printable, time_range
from kennel.ui.routes import View, show

When = Annotated[str, Query(max_length=40), Printable]
Name = Annotated[str, Query(max_length=128), Printable]
PredictionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
LONGEST = timedelta(days=92)  # what one Monitoring page may span
Register = Callable[[str], Callable[[Callable[..., Response]], Callable[..., Response]]]


def confidence(text: str, name: str) -> float | None:
    """A confidence from the query: empty for none, else a number in [0, 1]."""
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ConfigError(f"{name}={text[:20]!r}: a confidence is a number from 0 to 1")
    return value


def install(app: FastAPI, ui: Dashboard, page: Register) -> None:
    ws = ui.ws
    saliency = images.Saliency(ws)
    buckets: BucketCache[Any] = BucketCache()

    @page("/monitoring")
    def monitoring_page(
        request: Request, env: Name = "", since: When = "", until: When = ""
    ) -> Response:
        session, who = signed_in(request, ui)
        known = monitoring.environments(ws)
        env = env.strip() or ws.project.config.monitor.environment
        if env not in known:
            raise NotFoundError(f"no environment {env!r} is configured or monitored"
                                f"{did_you_mean(env, known)}")  # fmt: skip
        now = datetime.now(UTC)
        start, end = time_range(since, until, now=now, default_since="7d", longest=LONGEST)
        m = monitoring.monitoring(ws, env, since=start, until=end, cache=buckets)
        earlier = ""
        if not m.runs and m.newest is not None:
            week = {"env": env, "since": (m.newest.until - timedelta(days=7)).isoformat(),
                    "until": (m.newest.until + timedelta(minutes=1)).isoformat()}  # fmt: skip
            earlier = "/monitoring?" + urlencode(week)
        context = {"m": m, "env": env, "since_text": since.strip() or "7d",
                   "until_text": until.strip(), "earlier": earlier}  # fmt: skip
        view = View("ui/monitoring.html", f"Monitoring: {env}", context,
                    {"live-monitoring": "ui/_monitoring.html"})  # fmt: skip
        return show(request, session, who, view)

    @app.get("/predictions", include_in_schema=False)
    def predictions_page(
        request: Request,
        since: When = "",
        until: When = "",
        env: Annotated[str, Query(max_length=64), Printable] = "",
        camera: Annotated[str, Query(max_length=256), Printable] = "",
        label: Name = "",
        min_conf: Annotated[str, Query(max_length=32), Printable] = "",
        max_conf: Annotated[str, Query(max_length=32), Printable] = "",
        feedback: Annotated[str, Query(pattern="^(yes|no)?$")] = "",
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    ) -> Response:
        session, who = signed_in(request, ui)
        form = predictions.SearchForm(
            since.strip(), until.strip(), env.strip(), camera.strip(), label.strip(),
            confidence(min_conf, "min_conf"), confidence(max_conf, "max_conf"), feedback, page,
        )  # fmt: skip
        found = predictions.search(ws, form, datetime.now(UTC))
        view = View("ui/predictions.html", "Predictions", {"s": found})
        return show(request, session, who, view)

    @app.get("/predictions/{prediction_id}", include_in_schema=False)
    def prediction_page(request: Request, prediction_id: PredictionId) -> Response:
        session, who = signed_in(request, ui)
        p = predictions.prediction(ws, prediction_id)
        view = View("ui/prediction.html", f"Prediction {prediction_id}",
                    {"p": p, "not_kept": NOT_KEPT})  # fmt: skip
        return show(request, session, who, view)

    @app.get("/predictions/{prediction_id}/input.png", include_in_schema=False)
    def prediction_input(request: Request, prediction_id: PredictionId) -> Response:
        signed_in(request, ui)
        found = images.prediction(ws, prediction_id)
        return Response(images.input_png(ws, found), media_type="image/png")

    @app.get("/predictions/{prediction_id}/saliency.png", include_in_schema=False)
    def prediction_saliency(request: Request, prediction_id: PredictionId) -> Response:
        signed_in(request, ui)
        found = images.prediction(ws, prediction_id)
        return Response(saliency.png(found), media_type="image/png")
