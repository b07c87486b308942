"""The read-only pages over what the project has made: datasets (with thumbnails), runs and
tuning studies, and models (with their bundle as a zip). Every page is a GET with a URL that
can be shared; its query parameters are typed and bounded, and an unknown id or a bad value
is a 4xx page saying which (kennel.ui.app's handlers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import Response

from kennel.errors import NotFoundError
from kennel.ui import datasets as data
from kennel.ui import model_pages, run_pages
from kennel.ui.app import Dashboard, error_page, signed_in
from kennel.ui.paging import Endpoint, linker, pages_of
from kennel.ui.query import Printable
from kennel.ui.routes import View, show
from kennel.ui.thumbs import MEDIA_TYPE, NotAnImage, Thumbnails

Page = Annotated[int, Query(ge=1, le=1_000_000)]
Name = Annotated[str, Path(min_length=1, max_length=128), Printable]
Spec = Annotated[str, Path(min_length=1, max_length=80)]
Word = Annotated[str, Query(max_length=128), Printable]
Against = Annotated[str, Query(max_length=200), Printable]
Slice = Annotated[str, Query(alias="slice", max_length=300), Printable]
Digest = Annotated[str, Path(pattern="^[0-9a-f]{64}$")]
VERSIONS_PAGE = 50


def install(app: FastAPI, ui: Dashboard) -> None:
    ws = ui.ws
    indexes = data.Indexes()
    thumbnails = Thumbnails(ws)

    def get(path: str) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            app.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)
            return endpoint

        return register

    @get("/thumbs/{sha256}")
    def thumb(request: Request, sha256: Digest) -> Response:
        signed_in(request, ui)
        try:
            image = thumbnails.jpeg(sha256)
        except NotAnImage as exc:
            return error_page(request, 415, str(exc))
        # the content behind a sha256 never changes: the browser may keep it, privately and
        # not for long (it stays viewable there after signing out)
        headers = {"Cache-Control": "private, max-age=3600, immutable"}
        return Response(image, media_type=MEDIA_TYPE, headers=headers)

    @get("/datasets")
    def datasets(request: Request) -> Response:
        session, who = signed_in(request, ui)
        counts = ws.catalog.store.version_counts()
        rows = [(n, counts.get(n, 0), ws.catalog.latest(n)) for n in ws.catalog.datasets()]
        return show(request, session, who, View("ui/datasets.html", "Datasets", {"rows": rows}))

    @get("/datasets/{name}")
    def dataset(request: Request, name: Name, page: Page = 1) -> Response:
        session, who = signed_in(request, ui)
        data.known_dataset(ws, name)
        total = ws.catalog.store.version_counts().get(name, 0)
        pages = pages_of(total, VERSIONS_PAGE, page, f"{name}'s versions")
        versions = ws.catalog.store.page(
            name, limit=VERSIONS_PAGE, offset=(page - 1) * VERSIONS_PAGE
        )
        sizes = {"images": [(float(v.seq), float(v.n_rows)) for v in reversed(versions)]}
        context = {"name": name, "versions": versions, "total": total, "sizes": sizes,
                   "page": page, "pages": pages, "href": linker(request.url.path, {}),
                   "disputes": data.disputes(ws, who, name)}  # fmt: skip
        return show(request, session, who, View("ui/dataset.html", f"Dataset {name}", context))

    @get("/datasets/{name}/{spec}")
    def dataset_version(
        request: Request,
        name: Name,
        spec: Spec,
        label: Word = "",
        split: Word = "",
        slice_: Slice = "",
        against: Against = "",
        page: Page = 1,
        qpage: Page = 1,
    ) -> Response:
        session, who = signed_in(request, ui)
        version = data.resolve(ws, name, spec)
        if version.dataset != name:  # a whole ref of another dataset under this one's URL
            raise NotFoundError(f"{spec!r} is not a version of {name!r}")
        index = indexes.of(ws, version)
        selection = data.Selection(label.strip(), split.strip(), slice_.strip())
        positions = data.selected(index, selection)
        pages = pages_of(len(positions), data.PER_PAGE, page, "the selected images")
        slice_counts = {
            column: [(value, int((codes[positions] == i).sum())) for i, value in enumerate(values)]
            for column, (values, codes) in index.slices.items()
        }
        diff = None
        if against.strip():
            diff = indexes.diff(ws, data.resolve(ws, name, against.strip()), version)
        chain, chain_more = data.ancestry(ws, version)
        params = {**selection.__dict__, "against": against.strip(), "qpage": qpage}
        context = {
            "v": version,
            "chain": chain,
            "chain_more": chain_more,
            "index": index,
            "selection": selection,
            "selected": len(positions),
            "quality": data.QUALITY,
            "histograms": {k: data.bins(index.quality[k][positions]) for k in data.QUALITY},
            "slice_counts": slice_counts,
            "slice_values": data.SLICE_VALUES,
            "tiles": data.tiles(index, positions, page),
            "page": page,
            "pages": pages,
            "q": data.quarantine(ws, version, qpage),
            "diff": diff,
            "diff_rows": data.DIFF_ROWS,
            "others": ws.catalog.store.page(name, limit=VERSIONS_PAGE),
            "self_path": request.url.path,
            "href": linker(request.url.path, {**params, "page": page}),
        }
        title = f"{version.dataset} v{version.seq}"
        return show(request, session, who, View("ui/dataset_version.html", title, context))

    run_pages.install(app, ui, get)
    model_pages.install(app, ui, get)
