"""What a service serves and how it is doing: GET /v1/model, /health/live, /health/ready and
/metrics (Prometheus)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kennel.serve import schemas
from kennel.serve.routes.errors import ERRORS
from kennel.serve.service import service_of


async def model(request: Request) -> schemas.ModelOut:
    service = service_of(request)
    p = service.predictor()
    meta = p.bundle.meta
    return schemas.ModelOut(
        name=p.name,
        version=p.version,
        alias=service.holder.alias,
        environment=service.environment,
        labels=p.bundle.labels,
        image_size=p.bundle.image_size,
        frame=p.frame.as_dict(),
        ood=p.check.as_dict(),
        graph="int8" if p.bundle.int8 else "fp32",
        metrics={k: meta["metrics"].get(k) for k in ("accuracy", "macro_f1", "n")},
        dataset={k: str(v) for k, v in meta["dataset"].items()},
    )


async def live() -> schemas.HealthOut:
    return schemas.HealthOut(status="live")


async def ready(request: Request) -> JSONResponse:
    service = service_of(request)
    current = service.holder.current
    if current is None or service.draining:
        detail = "draining" if service.draining else service.not_ready()
        return JSONResponse({"status": "not_ready", "detail": detail}, 503)
    # the digest of the bundle's metadata (its run, its registration, every file's digest): a
    # deploy tells its own service from another project's on the port, whose model may be
    # byte for byte the same
    digest = current.bundle.metadata_sha256
    body = {"status": "ready", "version": current.version, "model": current.name, "sha256": digest}
    return JSONResponse(body)


async def metrics(request: Request) -> Response:
    service = service_of(request)
    current = service.holder.current
    if current is not None:
        service.metrics.model_version.labels(current.name).set(current.version)
    if service.predlog is not None:
        service.metrics.log_spooled.set(service.predlog.spooled_lines())
    if service.batcher is not None:
        service.metrics.queue_depth.set(service.batcher.depth)
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI) -> None:
    """Serve GET /v1/model, /health/live, /health/ready and /metrics."""
    app.add_api_route(
        "/v1/model",
        model,
        methods=["GET"],
        response_model=schemas.ModelOut,
        responses=ERRORS,
        summary="The model now being served",
    )
    app.add_api_route("/health/live", live, methods=["GET"], response_model=schemas.HealthOut)
    app.add_api_route(
        "/health/ready",
        ready,
        methods=["GET"],
        response_model=schemas.HealthOut,
        responses={503: {"model": schemas.HealthOut}},
    )
    app.add_api_route(
        "/metrics", metrics, methods=["GET"], response_class=Response, summary="Prometheus metrics"
    )
