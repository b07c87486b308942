"""The prediction service: ``create_app(service)`` builds a FastAPI app around one Service.

Routes: POST /v1/predict, POST /v1/predict/batch, POST /v1/feedback (token), POST
/v1/admin/reload (token), GET /v1/model, GET /health/live, GET /health/ready, GET /metrics.
Errors are JSON ``{"error": code, "detail": text}``; bad input is always a 4xx.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kennel.db import Database
from kennel.db.audit import record
from kennel.db.schema import FeedbackRow
from kennel.errors import KennelError, status_of
from kennel.imaging import ImageRejected, probe
from kennel.serve import schemas
from kennel.serve.auth import Identity, TokenStore
from kennel.serve.batching import MicroBatcher, QueueFull
from kennel.serve.budget import DecodeBudget
from kennel.serve.holder import ModelHolder, Swap
from kennel.serve.metrics import ServiceMetrics
from kennel.serve.predlog import PredictionLog, row_of
from kennel.serve.runtime import Prediction, Predictor, Prepared

IMAGE_TYPES = [
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/tiff",
    "application/octet-stream",
]


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


@dataclass
class ServiceSettings:
    environment: str = "production"
    max_batch: int = 16
    max_wait_ms: float = 4.0
    queue_size: int = 256
    timeout_s: float = 10.0
    max_upload_bytes: int = 10 * 1024 * 1024  # the whole request body, counted as it arrives
    decode_budget_bytes: int = 256 * 1024 * 1024  # decode memory of all decodes in flight
    keep_inputs: bool = False  # keep input images (saliency, retraining on labelled traffic)


@dataclass
class Service:
    holder: ModelHolder
    tokens: TokenStore
    db: Database
    predlog: PredictionLog | None
    settings: ServiceSettings = field(default_factory=ServiceSettings)
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    draining: bool = False
    batcher: MicroBatcher[tuple[Predictor, Prepared], Prediction] | None = None

    def predictor(self) -> Predictor:
        current = self.holder.current
        if current is None:
            raise ApiError(503, "not_ready", self.not_ready(), {"Retry-After": "5"})
        return current

    def not_ready(self) -> str:
        """Why no model serves, for any client: the reason itself (which may name files and
        paths) is in the service's log and its load-failure metric, not in answers."""
        if self.holder.last_error is None:
            return "no model loaded yet"
        return "the environment's model version cannot be loaded (see the service log)"


def _run_batch(items: Sequence[tuple[Predictor, Prepared]]) -> list[Prediction]:
    """Each item runs on the Predictor that accepted it, so a swap never mixes models."""
    out: list[Prediction | None] = [None] * len(items)
    groups: dict[int, list[int]] = {}
    for i, (predictor, _prepared) in enumerate(items):
        groups.setdefault(id(predictor), []).append(i)
    for indices in groups.values():
        predictor = items[indices[0]][0]
        for i, p in zip(
            indices, predictor.predict_prepared([items[i][1] for i in indices]), strict=True
        ):
            out[i] = p
    return [p for p in out if p is not None]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorOut, "description": text}
    for code, text in {
        400: "Bad request",
        401: "Missing or invalid token",
        403: "Token lacks the role",
        413: "Upload too large",
        415: "Unsupported media type",
        422: "Not an acceptable image or body",
        503: "Not ready or overloaded",
        504: "Timed out",
    }.items()
}
FEEDBACK_BYTES = 64 * 1024  # a prediction id and a label
FEEDBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": schemas.FeedbackIn.model_json_schema()}},
    }
}
IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            **{t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}
BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                    "required": ["files"],
                }
            }
        },
    }
}


# A lone request this small, whose header declares this little decode memory (about 0.5 MP),
# is decoded on the event loop (about a millisecond); bigger or concurrent ones go to the
# decoder threads so the loop keeps answering. File size alone says nothing: a 95 KB PNG can
# declare 49 megapixels.
INLINE_DECODE_BYTES = 256 * 1024
INLINE_DECODE_COST = 4 * 1024 * 1024


class _Measure:
    """Request counts and latency by route and status, as plain ASGI: Starlette's
    BaseHTTPMiddleware wraps every request in task groups and memory streams, which cost more
    than a small model's inference."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def measured(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, measured)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - began)


def create_app(service: Service) -> FastAPI:
    settings = service.settings
    # Decoding runs beside the event loop (Pillow releases the GIL); a plain executor is a
    # cheaper hop than anyio's worker threads. One per lifespan.
    decoders: list[ThreadPoolExecutor] = []
    budget = DecodeBudget(settings.decode_budget_bytes)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.batcher = MicroBatcher(
            _run_batch,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            queue_size=settings.queue_size,
            on_batch=lambda n: service.metrics.batch_size.observe(n),
        )
        await service.batcher.start()
        workers = max(2, os.cpu_count() or 1)
        decoders.append(ThreadPoolExecutor(workers, thread_name_prefix="kennel-decode"))
        if service.predlog is not None:
            service.predlog.start()
        await run_in_threadpool(service.holder.start)
        try:
            yield
        finally:
            service.draining = True
            await service.batcher.stop()
            service.holder.stop()
            if service.predlog is not None:
                await run_in_threadpool(service.predlog.stop)
            decoders.pop().shutdown(wait=True)

    app = FastAPI(
        title="kennel prediction service",
        version="1",
        lifespan=lifespan,
        description="Cat-or-dog predictions from the model a registry alias points at.",
        docs_url=None,  # served below from installed assets: the default pages load a CDN
        redoc_url=None,
    )
    _offline_docs(app)

    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "detail": exc.detail}, exc.status, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": "invalid_request", "detail": f"{where}: {first['msg']}"}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": "http_error", "detail": str(exc.detail)},
            exc.status_code,
            getattr(exc, "headers", None),
        )

    @app.exception_handler(KennelError)
    async def _kennel(_r: Request, exc: KennelError) -> JSONResponse:
        return error_response(exc)

    app.add_middleware(_Measure, metrics=service.metrics)

    def identity(action: str) -> Any:
        def check(request: Request) -> Identity:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise ApiError(
                    401,
                    "unauthorized",
                    "a bearer token is required",
                    {"WWW-Authenticate": "Bearer"},
                )
            who = service.tokens.identify(token.strip())
            if who is None:
                raise ApiError(
                    401, "unauthorized", "unknown or revoked token", {"WWW-Authenticate": "Bearer"}
                )
            if not who.may(action):
                raise ApiError(403, "forbidden", f"role {who.role!r} may not {action}")
            return who

        return Depends(check)

    async def read_limited(request: Request) -> bytes:
        return b"".join([chunk async for chunk in request.stream()])

    async def prepare(predictor: Predictor, data: bytes) -> Prepared:
        """Check the header (cheap), then decode inline only when the image is small and the
        loop has nothing else to do; otherwise on a decoder thread, within the budget."""
        loop = asyncio.get_running_loop()
        check = functools.partial(
            probe, data, max_pixels=predictor.max_pixels, max_bytes=budget.total
        )
        small = len(data) <= INLINE_DECODE_BYTES
        header = check() if small else await loop.run_in_executor(decoders[-1], check)
        batcher = service.batcher
        assert batcher is not None
        if small and header.cost <= INLINE_DECODE_COST and batcher.alone:
            return predictor.prepare(data)  # inline, on the loop
        await budget.acquire(header.cost)
        try:
            work = decoders[-1].submit(predictor.prepare, data)
        except BaseException:
            budget.release(header.cost)
            raise
        # released when the decode really ends, even if this request is cancelled meanwhile
        work.add_done_callback(lambda _f: budget.release(header.cost))
        return await asyncio.wrap_future(work)

    async def predict_bytes(data: bytes, source: str) -> Prediction:
        assert service.batcher is not None
        with service.batcher.announce():
            return await _predict_bytes(data, source)

    async def _predict_bytes(data: bytes, source: str) -> Prediction:
        if not data:
            raise ApiError(400, "empty_body", "no image bytes in the request")
        predictor = service.predictor()
        batcher = service.batcher
        assert batcher is not None
        try:
            prepared = await prepare(predictor, data)
        except ImageRejected as exc:
            if service.predlog is not None:
                service.predlog.reject(
                    environment=settings.environment, source=source, reason=str(exc)
                )
            raise ApiError(422, "invalid_image", str(exc)) from exc
        service.metrics.queue_depth.set(batcher.depth)
        try:
            prediction = await asyncio.wait_for(
                batcher.submit((predictor, prepared)), settings.timeout_s
            )
        except QueueFull as exc:
            raise ApiError(
                503,
                "overloaded",
                "the inference queue is full; retry shortly",
                {"Retry-After": "1"},
            ) from exc
        except TimeoutError as exc:
            raise ApiError(504, "timeout", f"no answer within {settings.timeout_s}s") from exc
        if service.predlog is not None:
            # answered only once the record is on disk: a crash after this loses nothing
            await service.predlog.commit(
                row_of(
                    prediction,
                    environment=settings.environment,
                    source=source,
                    input_sha256=hashlib.sha256(data).hexdigest(),
                    data=data if settings.keep_inputs else None,
                )
            )
        service.metrics.predictions.labels(prediction.label).inc()
        return prediction

    def source_of(request: Request) -> str:
        return (request.headers.get("x-kennel-source") or "api")[:256]

    @app.post(
        "/v1/predict",
        response_model=schemas.PredictionOut,
        responses=ERRORS,
        openapi_extra=IMAGE_BODY,
        summary="Classify one image",
    )
    async def predict(request: Request) -> JSONResponse:
        request = _limited(request, settings.max_upload_bytes)
        content_type = request.headers.get("content-type", "application/octet-stream")
        if content_type.startswith("multipart/form-data"):
            form = await _form(request, settings.max_upload_bytes)
            try:
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    raise ApiError(422, "invalid_request", "multipart body needs a 'file' part")
                data = await upload.read()
            finally:
                await form.close()
        elif content_type.split(";")[0].strip() in IMAGE_TYPES or content_type.startswith("image/"):
            data = await read_limited(request)
        else:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"send image bytes or multipart/form-data, not {content_type!r}",
            )
        prediction = await predict_bytes(data, source_of(request))
        return JSONResponse(
            prediction.as_dict(), headers={"X-Model-Version": str(prediction.version)}
        )

    @app.post(
        "/v1/predict/batch",
        response_model=schemas.BatchOut,
        responses=ERRORS,
        openapi_extra=BATCH_BODY,
        summary="Classify several images (multipart 'files')",
    )
    async def predict_batch(request: Request) -> JSONResponse:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(415, "unsupported_media_type", "send multipart/form-data with 'files'")
        request = _limited(request, settings.max_upload_bytes)
        form = await _form(request, settings.max_upload_bytes)
        try:
            uploads = [u for u in form.getlist("files") if not isinstance(u, str)]
            if not uploads:
                raise ApiError(422, "invalid_request", "multipart body needs one or more 'files'")
            datas = [await u.read() for u in uploads]
        finally:
            await form.close()

        async def one(index: int, data: bytes) -> dict[str, Any]:
            try:
                p = await predict_bytes(data, source_of(request))
                return {"index": index, "prediction": p.as_dict()}
            except ApiError as exc:
                if exc.status >= 500:
                    raise
                return {"index": index, "error": exc.code, "detail": exc.detail}

        results = await asyncio.gather(*(one(i, d) for i, d in enumerate(datas)))
        return JSONResponse({"results": list(results)})

    @app.post(
        "/v1/feedback",
        response_model=schemas.FeedbackOut,
        responses=ERRORS,
        summary="Record the true label of a prediction (role: operator, qa or admin)",
        openapi_extra=FEEDBACK_BODY,
    )
    async def feedback(
        request: Request,
        who: Identity = identity("feedback"),  # noqa: B008 - FastAPI dependency
    ) -> schemas.FeedbackOut:
        # the token is checked (the dependency) before a byte of the body is read, and the
        # body is small by nature: it is cut off at FEEDBACK_BYTES, whatever it claims
        raw = await read_limited(_limited(request, FEEDBACK_BYTES))
        try:
            body = schemas.FeedbackIn.model_validate_json(raw)
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "body"
            raise ApiError(422, "invalid_request", f"{where}: {first['msg']}") from exc
        labels = service.predictor().bundle.labels
        if body.label not in labels:
            raise ApiError(422, "invalid_label", f"label must be one of {labels}")

        def store() -> None:
            with service.db.session() as s:
                s.merge(
                    FeedbackRow(
                        prediction_id=body.prediction_id,
                        label=body.label,
                        at=datetime.now(UTC),
                        actor=who.name,
                    )
                )
                record(
                    s,
                    actor=who.name,
                    action="feedback",
                    subject=body.prediction_id,
                    details={"label": body.label, "token": who.token_id},
                )

        await run_in_threadpool(store)
        return schemas.FeedbackOut(
            prediction_id=body.prediction_id, label=body.label, recorded=True
        )

    @app.post(
        "/v1/admin/reload",
        response_model=schemas.ReloadOut,
        responses={
            **ERRORS,
            409: {"model": schemas.ErrorOut, "description": "The alias's version cannot load"},
        },
        summary="Check the alias now and swap models if it moved (role: operator, admin)",
    )
    async def reload(who: Identity = identity("reload")) -> schemas.ReloadOut:  # noqa: B008
        def reload_audited() -> Swap | None:
            try:
                return service.holder.reload()
            finally:  # audited whatever the outcome
                current = service.holder.current
                with service.db.session() as s:
                    record(
                        s,
                        actor=who.name,
                        action="service.reload",
                        subject=settings.environment,
                        details={
                            "token": who.token_id,
                            "version": current.version if current else None,
                            "error": service.holder.last_error,
                        },
                    )

        swap = await run_in_threadpool(reload_audited)  # LoadFailed: 409, from the error table
        current = service.holder.current
        return schemas.ReloadOut(
            version=current.version if current else None,
            swapped=swap is not None,
            error=service.holder.last_error,
        )

    @app.get(
        "/v1/model",
        response_model=schemas.ModelOut,
        responses=ERRORS,
        summary="The model now being served",
    )
    async def model() -> schemas.ModelOut:
        p = service.predictor()
        meta = p.bundle.meta
        return schemas.ModelOut(
            name=p.name,
            version=p.version,
            alias=service.holder.alias,
            environment=settings.environment,
            labels=p.bundle.labels,
            image_size=p.bundle.image_size,
            metrics={k: meta["metrics"].get(k) for k in ("accuracy", "macro_f1", "n")},
            dataset={k: str(v) for k, v in meta["dataset"].items()},
        )

    @app.get("/health/live", response_model=schemas.HealthOut)
    async def live() -> schemas.HealthOut:
        return schemas.HealthOut(status="live")

    @app.get(
        "/health/ready",
        response_model=schemas.HealthOut,
        responses={503: {"model": schemas.HealthOut}},
    )
    async def ready() -> JSONResponse:
        current = service.holder.current
        if current is None or service.draining:
            detail = "draining" if service.draining else service.not_ready()
            return JSONResponse({"status": "not_ready", "detail": detail}, 503)
        return JSONResponse({"status": "ready", "version": current.version})

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics")
    async def metrics() -> Response:
        current = service.holder.current
        if current is not None:
            service.metrics.model_version.labels(current.name).set(current.version)
        if service.predlog is not None:
            service.metrics.log_spooled.set(service.predlog.spooled_lines())
        if service.batcher is not None:
            service.metrics.queue_depth.set(service.batcher.depth)
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    service.holder.on_error = lambda _m: service.metrics.load_failures.inc()
    return app


DOCS_ASSETS = "/docs-assets"


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc with their scripts served from the installed
    ``fastapi-offline`` package (MIT; Swagger UI Apache-2.0, ReDoc MIT): they work offline."""
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title}: API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def error_response(exc: KennelError) -> JSONResponse:
    """A kennel error as JSON with the status from ``kennel.errors.STATUS``; only a 503 (try
    again later) carries Retry-After."""
    status = status_of(exc).http_status
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": exc.code, "detail": " ".join(str(exc).split())}, status, headers)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"upload exceeds {limit} bytes")


def _limited(request: Request, limit: int) -> Request:
    """The request with a body that stops at ``limit`` bytes: the 413 is raised as the bytes
    arrive, so chunked and multipart bodies are bounded like any other and nothing over the
    limit is buffered, spooled to disk or kept."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    receive, seen = request.receive, 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)
        return message

    return Request(request.scope, bounded)


async def _form(request: Request, limit: int) -> Any:
    try:
        return await request.form(max_files=64, max_fields=64, max_part_size=limit)
    except ApiError:
        raise
    except Exception as exc:
        raise ApiError(400, "bad_multipart", f"cannot parse multipart body: {exc}") from exc
