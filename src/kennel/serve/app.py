"""The prediction service: ``create_app(service)`` builds a FastAPI app around one Service.

Routes (``kennel.serve.routes``): POST /v1/predict, POST /v1/predict/batch, POST /v1/feedback
(token), POST /v1/admin/reload (token), GET /v1/model, GET /health/live, GET /health/ready,
GET /metrics, and the offline docs at /docs and /redoc. Errors are JSON ``{"error": code,
"detail": text}``; bad input is always a 4xx.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kennel.serve.batching import MicroBatcher
from kennel.serve.budget import DecodeBudget
from kennel.serve.deadline import BodyDeadline
from kennel.serve.hosts import HINT, KnownHosts
from kennel.serve.metrics import ServiceMetrics
from kennel.serve.routes import docs, errors, feedback, health, predict
from kennel.serve.routes.errors import error_response
from kennel.serve.routes.raw_predict import PATH, RawPredict
from kennel.serve.service import ApiError, Service, run_batch

__all__ = ["ApiError", "Service", "create_app", "error_response"]


class _Measure:
    """Request counts and latency by route and status, as plain ASGI: Starlette's
    BaseHTTPMiddleware wraps every request in task groups and memory streams, which cost more
    than a small model's inference."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # each (route, status)'s samples, looked up once: ``labels()`` costs more than the
        # increment (routes are the app's templates or "unmatched", so the set stays small)
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}

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
            series = self._series.get((path, status))
            if series is None:
                series = self._series[path, status] = (
                    self.metrics.requests.labels(path, str(status)),
                    self.metrics.latency.labels(path),
                )
            series[0].inc()
            series[1].observe(time.perf_counter() - began)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the service's batcher, decoder threads, prediction log and model holder; on
    shutdown turn readiness off and stop them in turn."""
    service: Service = app.state.service
    settings = service.settings
    service.batcher = MicroBatcher(
        run_batch,
        max_batch=settings.max_batch,
        max_wait_ms=settings.max_wait_ms,
        queue_size=settings.queue_size,
        on_batch=lambda n: service.metrics.batch_size.observe(n),
    )
    await service.batcher.start()
    # Decoding runs beside the event loop (Pillow releases the GIL); a plain executor is a
    # cheaper hop than anyio's worker threads.
    workers = max(2, os.cpu_count() or 1)
    service.decoders = ThreadPoolExecutor(workers, thread_name_prefix="kennel-decode")
    service.budget = DecodeBudget(settings.decode_budget_bytes)
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
        service.decoders.shutdown(wait=True)


def create_app(service: Service, hosts: list[str] | None = None) -> FastAPI:
    """The service's API; ``hosts``: the only Host names it answers to (None: any), as
    ``kennel.serve.hosts.loopback_hosts`` gives them for the address it listens on."""
    app = FastAPI(
        title="kennel prediction service",
        version="1",
        lifespan=_lifespan,
        description="Cat-or-dog predictions from the model a registry alias points at.",
        docs_url=None,  # served by routes.docs from installed assets: the default pages use a CDN
        redoc_url=None,
    )
    app.state.service = service
    docs.install(app)
    errors.install(app)
    for routes in (predict, feedback, health):
        routes.install(app)
    # innermost first: raw image predictions are answered inside the deadline and the metrics
    route = next(r for r in app.routes if getattr(r, "path", None) == PATH)
    app.add_middleware(RawPredict, service=service, route=route)
    app.add_middleware(BodyDeadline, seconds=service.settings.body_timeout_s)
    app.add_middleware(_Measure, metrics=service.metrics)
    if hosts:
        app.add_middleware(KnownHosts, hosts=hosts, what="this service", pages=False, hint=HINT)
    service.holder.on_error = lambda _m: service.metrics.load_failures.inc()
    if service.predlog is not None:
        service.predlog.room.on_drop = service.metrics.inputs_not_kept.inc
    return app
