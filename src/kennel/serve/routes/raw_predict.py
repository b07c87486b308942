"""POST /v1/predict with image bytes as the body, answered as plain ASGI ahead of FastAPI.

FastAPI's way to a route (the exception and exit-stack middlewares, the router's match over
every route, a Request object, dependency solving) costs a few hundred microseconds of CPU per
request on a 2-core machine: a sizeable share of a small model's own few milliseconds. This
middleware answers the common case itself and passes everything else on unchanged, so the
FastAPI route (``routes.predict``) still serves multipart uploads, unsupported media types,
other methods, and documents the endpoint in the OpenAPI schema.

It sits inside the request metrics and the body deadline (``kennel.serve.app``) and answers
exactly as the FastAPI route would: the same body limit (413 as the bytes arrive, or at once
from Content-Length), the same ``{"error", "detail"}`` JSON for every 4xx and 5xx the route
raises, the same headers, and the answer only once the prediction's record is durable
(``predict.predict_bytes``).
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from kennel.digits import declared_over
from kennel.errors import KennelError
from kennel.serve.routes.common import source_name, too_large
from kennel.serve.routes.errors import error_response
from kennel.serve.routes.predict import predict_bytes, raw_image
from kennel.serve.service import ApiError, Service

PATH = "/v1/predict"


class RawPredict:
    def __init__(self, app: ASGIApp, service: Service, route: Any = None) -> None:
        self.app = app
        self.service = service
        self.route = route  # the FastAPI route, for scope["route"] (the metrics' label)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        content_type = declared = source = None
        for name, value in scope["headers"]:  # the first of each, as Starlette's Headers.get
            if name == b"content-type":
                content_type = content_type or value.decode("latin-1")
            elif name == b"content-length":
                declared = declared or value.decode("latin-1")
            elif name == b"x-kennel-source":
                source = source or value.decode("latin-1")
        content_type = content_type or "application/octet-stream"
        if not raw_image(content_type):
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        try:
            data = await _body(receive, self.service.settings.max_upload_bytes, declared)
            prediction = await predict_bytes(self.service, data, source_name(source))
        except ApiError as exc:
            body = {"error": exc.code, "detail": exc.detail}
            await JSONResponse(body, exc.status, exc.headers)(scope, receive, send)
            return
        except KennelError as exc:
            await error_response(exc)(scope, receive, send)
            return
        headers = {"X-Model-Version": str(prediction.version)}
        await JSONResponse(prediction.as_dict(), headers=headers)(scope, receive, send)


async def _body(receive: Receive, limit: int, declared: str | None) -> bytes:
    """The whole body, refused (413) once it passes ``limit``: nothing over it is kept."""
    if declared_over(declared, limit):
        raise too_large(limit)
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away before the end
            raise ApiError(400, "incomplete_body", "the request body ended early")
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
