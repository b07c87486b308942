"""The consuming application of pattern 3: a small prediction API whose model arrives on the
feed (no registry, no database), hot-swapped whenever a newer signed version is announced.

Request bodies are bounded while they arrive (a declared Content-Length over the limit, or a
chunked body growing past it, is a 413 at once), never buffered whole before the check."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from kennel.digits import declared_over
from kennel.imaging import ImageRejected
from kennel.serve.deadline import BodyDeadline
from kennel.serve.hosts import HINT, KnownHosts
from kennel.serve.service import ApiError
from kennel.stream.subscriber import ModelSubscriber

MAX_BYTES = 10 * 1024 * 1024


async def read_bounded(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared_over(declared, limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_consumer_app(
    subscriber: ModelSubscriber,
    *,
    max_bytes: int = MAX_BYTES,
    body_timeout_s: float = 30.0,
    hosts: list[str] | None = None,
) -> FastAPI:
    """The consuming app's API; ``hosts``: the only Host names it answers to (None: any)."""
    app = FastAPI(title="kennel model-feed consumer", version="1")
    app.add_middleware(BodyDeadline, seconds=body_timeout_s)
    if hosts:
        app.add_middleware(KnownHosts, hosts=hosts, what="this app", pages=False, hint=HINT)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        body = {"error": exc.code, "detail": exc.detail}
        return JSONResponse(body, exc.status, headers=exc.headers)

    @app.post("/v1/predict")
    async def predict(request: Request) -> Any:
        data = await read_bounded(request, max_bytes)
        if data is None:
            detail = f"upload larger than {max_bytes} bytes"
            return JSONResponse({"error": "too_large", "detail": detail}, 413)
        predictor = subscriber.current
        if predictor is None:
            detail = subscriber.last_error or "no model has arrived on the feed yet"
            return JSONResponse({"error": "not_ready", "detail": detail}, 503)
        try:
            prediction = await run_in_threadpool(predictor.predict_one, data)
        except ImageRejected as exc:
            return JSONResponse({"error": "invalid_image", "detail": str(exc)}, 422)
        return prediction.as_dict()

    @app.get("/v1/model")
    def model() -> dict[str, Any]:
        current = subscriber.current
        return {
            "model": None
            if current is None
            else {"name": current.name, "version": current.version},
            "seq": subscriber.seq,
            "loaded": [x.__dict__ for x in subscriber.loaded],
            "rejected": [r.__dict__ for r in subscriber.rejected],  # the most recent ones
            "rejected_total": subscriber.rejected_total,
            "feed_error": subscriber.last_error,
        }

    @app.get("/health/ready")
    def ready() -> Any:
        if subscriber.current is None:
            return JSONResponse({"status": "not_ready"}, 503)
        return {"status": "ready"}

    return app
