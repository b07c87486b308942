"""The Models pages: versions with metrics and gates, one version's evaluation report, card,
lineage and files, two versions side by side, and the bundle as a zip (a viewer may download
it: the same files ``kennel models download`` writes)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from kennel.errors import NotFoundError, did_you_mean
from kennel.registry.entities import ModelVersion
from kennel.ui.app import Dashboard, signed_in
from kennel.ui.models import Calibrations, bundle_zip, curves, model_view
from kennel.ui.paging import Register, linker, pages_of
from kennel.ui.query import Printable
from kennel.ui.routes import View, show

PER_PAGE = 50
ON_INDEX = 20  # versions per model on /models
Name = Annotated[str, Path(min_length=1, max_length=128), Printable]
Spec = Annotated[str, Path(min_length=1, max_length=64)]
Ref = Annotated[str, Query(min_length=1, max_length=200), Printable]
Page = Annotated[int, Query(ge=1, le=1_000_000)]


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def quality(models: list[ModelVersion]) -> dict[str, list[tuple[float, float | None]]]:
    """Test accuracy and macro F1 per version (x = version number), oldest first."""
    ordered = sorted(models, key=lambda m: m.version)
    return {
        metric: [(float(m.version), number(m.metrics.get(key))) for m in ordered]
        for metric, key in (("accuracy", "accuracy"), ("macro F1", "macro_f1"))
    }


def deltas(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """Headline numbers of two reports side by side: overall, then per class."""
    rows = [(k, number(a.get(k)), number(b.get(k))) for k in ("accuracy", "macro_f1", "ece")]
    gap = ("recall gap", number(a.get("bias", {}).get("recall_gap")),
           number(b.get("bias", {}).get("recall_gap")))  # fmt: skip
    rows.append(gap)
    classes = list(dict.fromkeys([*a.get("per_class", {}), *b.get("per_class", {})]))
    for c in classes:
        for k in ("precision", "recall", "f1"):
            rows.append((f"{k} [{c}]", number(a.get("per_class", {}).get(c, {}).get(k)),
                         number(b.get("per_class", {}).get(c, {}).get(k))))  # fmt: skip
    return rows


def install(app: FastAPI, ui: Dashboard, get: Register) -> None:
    ws = ui.ws
    calibrations = Calibrations()

    def known(name: str) -> None:
        names = ws.registry.store.names()
        if name not in names:
            raise NotFoundError(f"no model named {name!r}{did_you_mean(name, names)}")

    def resolve(name: str, spec: str) -> ModelVersion:
        return ws.registry.resolve(f"{name}@{spec}")

    @get("/models")
    def models(request: Request) -> Response:
        session, who = signed_in(request, ui)
        listed = [(n, ws.registry.store.count(n), ws.registry.store.page(n, limit=ON_INDEX))
                  for n in sorted(ws.registry.store.names())]  # fmt: skip
        context = {"heading": "Models", "listed": listed,
                   "charts": {n: quality(vs) for n, _count, vs in listed},
                   "page": 1, "pages": 1, "href": linker("/models", {})}  # fmt: skip
        return show(request, session, who, View("ui/models.html", "Models", context))

    @get("/models/compare")
    def compare(request: Request, a: Ref, b: Ref) -> Response:
        session, who = signed_in(request, ui)
        left, right = (ws.registry.resolve(ref.strip()) for ref in (a, b))
        views = [model_view(ws, m, calibrations) for m in (left, right)]
        roc: dict[str, list[Any]] = {}
        for v in views:
            roc.update(curves(v.report, prefix=f"{v.model.ref} ")["roc"])
        keys = sorted({*views[0].params, *views[1].params})
        params = [(k, views[0].params.get(k), views[1].params.get(k)) for k in keys]
        context = {"views": views, "rows": deltas(views[0].report, views[1].report),
                   "roc": roc, "params": [p for p in params if repr(p[1]) != repr(p[2])],
                   "choices": ws.registry.store.page(left.name, limit=PER_PAGE)}  # fmt: skip
        title = f"{left.ref} and {right.ref}"
        return show(request, session, who, View("ui/models_compare.html", title, context))

    @get("/models/{name}")
    def model(request: Request, name: Name, page: Page = 1) -> Response:
        session, who = signed_in(request, ui)
        known(name)
        total = ws.registry.store.count(name)
        pages = pages_of(total, PER_PAGE, page, f"{name}'s versions")
        shown = ws.registry.store.page(name, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
        context = {"heading": f"Model {name}", "listed": [(name, total, shown)],
                   "charts": {name: quality(shown)},
                   "page": page, "pages": pages,
                   "href": linker(request.url.path, {"page": page})}  # fmt: skip
        return show(request, session, who, View("ui/models.html", f"Model {name}", context))

    @get("/models/{name}/{spec}")
    def version(request: Request, name: Name, spec: Spec) -> Response:
        session, who = signed_in(request, ui)
        view = model_view(ws, resolve(name, spec), calibrations)
        others = ws.registry.store.page(name, limit=PER_PAGE)
        context = {"m": view.model, "v": view, "others": others}
        return show(request, session, who, View("ui/model.html", view.model.ref, context))

    @get("/models/{name}/{spec}/bundle.zip")
    def bundle(request: Request, name: Name, spec: Spec) -> Response:
        signed_in(request, ui)
        chosen = resolve(name, spec)
        filename = f"{chosen.name}-{chosen.version}.zip"
        return StreamingResponse(
            bundle_zip(ws, chosen),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
