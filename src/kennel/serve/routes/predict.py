"""POST /v1/predict and /v1/predict/batch: image bytes in, predictions out.

The body is bounded as it arrives (``serve.max_upload_bytes``); the image header is checked
before decoding; decoding runs on the service's decoder threads within its decode budget
(small lone images excepted); inference goes through the micro-batcher; an answer is given
only once its prediction-log record is on disk.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from kennel.imaging import ImageRejected
from kennel.serve import schemas
from kennel.serve.batching import QueueFull
from kennel.serve.predlog import row_of
from kennel.serve.routes.common import form, limited, read_limited, source_of
from kennel.serve.routes.errors import ERRORS
from kennel.serve.runtime import Prediction, Predictor, Prepared
from kennel.serve.service import ApiError, Service, service_of

IMAGE_TYPES = [
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/tiff",
    "application/octet-stream",
]
MULTIPART = "multipart/form-data"


def media_type(content_type: str) -> str:
    """A Content-Type's media type, lower-cased (media types are case-insensitive)."""
    return content_type.split(";", 1)[0].strip().lower()


def raw_image(content_type: str) -> bool:
    """Whether a body of this Content-Type is read as the image's bytes (else multipart, or
    415). The one test of both ways in (this route and ``raw_predict.RawPredict``)."""
    kind = media_type(content_type)
    return kind in IMAGE_TYPES or kind.startswith("image/")


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


async def prepare(service: Service, predictor: Predictor, data: bytes) -> Prepared:
    """Check the header (cheap), then decode inline only when the image is small and the
    loop has nothing else to do; otherwise on a decoder thread, within the budget. The
    header is parsed once: the decode goes on from the opened file."""
    batcher, decoders, budget = service.batcher, service.decoders, service.budget
    assert batcher is not None and decoders is not None and budget is not None
    loop = asyncio.get_running_loop()
    check = functools.partial(predictor.open, data, max_bytes=budget.total)
    small = len(data) <= INLINE_DECODE_BYTES
    opened = check() if small else await loop.run_in_executor(decoders, check)
    cost = opened[1].cost
    if small and cost <= INLINE_DECODE_COST and batcher.alone:
        return predictor.prepare(data, opened)  # inline, on the loop
    await budget.acquire(cost)
    try:
        work = decoders.submit(predictor.prepare, data, opened)
    except BaseException:
        budget.release(cost)
        raise
    # released when the decode really ends, even if this request is cancelled meanwhile
    work.add_done_callback(lambda _f: budget.release(cost))
    return await asyncio.wrap_future(work)


async def predict_bytes(service: Service, data: bytes, source: str) -> Prediction:
    assert service.batcher is not None
    with service.batcher.announce():
        return await _predict_bytes(service, data, source)


async def _predict_bytes(service: Service, data: bytes, source: str) -> Prediction:
    if not data:
        raise ApiError(400, "empty_body", "no image bytes in the request")
    settings = service.settings
    predictor = service.predictor()
    batcher = service.batcher
    assert batcher is not None
    try:
        # one deadline for the decode (and the wait for its budget) and the inference: a
        # batch of pictures that each declare many megapixels answered after 99 s, the
        # deadline covering only the queue; a decode waiting for budget is never started
        async with asyncio.timeout(settings.timeout_s):  # wait_for would add a task a request
            try:
                prepared = await prepare(service, predictor, data)
            except ImageRejected as exc:
                if service.predlog is not None:
                    service.predlog.reject(
                        environment=service.environment, source=source, reason=str(exc)
                    )
                raise ApiError(422, "invalid_image", str(exc)) from exc
            service.metrics.queue_depth.set(batcher.depth)
            prediction = await batcher.submit((predictor, prepared))
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
                environment=service.environment,
                source=source,
                input_sha256=hashlib.sha256(data).hexdigest(),
                data=data if service.keeps_inputs else None,
            )
        )
    service.metrics.predictions.labels(prediction.label).inc()
    if prediction.pet is False:
        service.metrics.no_pet.inc()
    return prediction


async def predict(request: Request) -> JSONResponse:
    service = service_of(request)
    limit = service.settings.max_upload_bytes
    request = limited(request, limit)
    content_type = request.headers.get("content-type", "application/octet-stream")
    if media_type(content_type) == MULTIPART:
        body = await form(request, limit)
        try:
            parts = body.getlist("file")
            if len(parts) > 1:  # which one would be answered for? (the last, silently, once)
                raise ApiError(
                    422,
                    "invalid_request",
                    f"multipart body has {len(parts)} 'file' parts; send one, or several as "
                    "'files' to /v1/predict/batch",
                )
            upload = parts[0] if parts else None
            if upload is None or isinstance(upload, str):
                raise ApiError(422, "invalid_request", "multipart body needs a 'file' part")
            data = await upload.read()
        finally:
            await body.close()
    elif raw_image(content_type):
        data = await read_limited(request)
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send image bytes or multipart/form-data, not {content_type!r}",
        )
    prediction = await predict_bytes(service, data, source_of(request))
    return JSONResponse(prediction.as_dict(), headers={"X-Model-Version": str(prediction.version)})


async def predict_batch(request: Request) -> JSONResponse:
    if media_type(request.headers.get("content-type", "")) != MULTIPART:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data with 'files'")
    service = service_of(request)
    limit = service.settings.max_upload_bytes
    request = limited(request, limit)
    body = await form(request, limit)
    try:
        uploads = [u for u in body.getlist("files") if not isinstance(u, str)]
        if not uploads:
            raise ApiError(422, "invalid_request", "multipart body needs one or more 'files'")
        datas = [await u.read() for u in uploads]
    finally:
        await body.close()

    async def one(index: int, data: bytes) -> dict[str, Any]:
        try:
            p = await predict_bytes(service, data, source_of(request))
            return {"index": index, "prediction": p.as_dict()}
        except ApiError as exc:
            if exc.status >= 500:
                raise
            return {"index": index, "error": exc.code, "detail": exc.detail}

    results = await asyncio.gather(*(one(i, d) for i, d in enumerate(datas)))
    # every version that answered an item, in order (two where a hot swap came mid-batch)
    versions = sorted({r["prediction"]["model"]["version"] for r in results if "prediction" in r})
    headers = {"X-Model-Version": ", ".join(map(str, versions))} if versions else None
    return JSONResponse({"results": list(results)}, headers=headers)


def install(app: FastAPI) -> None:
    """Serve POST /v1/predict and /v1/predict/batch."""
    app.add_api_route(
        "/v1/predict",
        predict,
        methods=["POST"],
        response_model=schemas.PredictionOut,
        responses=ERRORS,
        openapi_extra=IMAGE_BODY,
        summary="Classify one image",
    )
    app.add_api_route(
        "/v1/predict/batch",
        predict_batch,
        methods=["POST"],
        response_model=schemas.BatchOut,
        responses=ERRORS,
        openapi_extra=BATCH_BODY,
        summary="Classify several images (multipart 'files')",
    )
