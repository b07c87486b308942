"""The routes that take a token: POST /v1/feedback (the true label of a prediction) and POST
/v1/admin/reload (check the alias now). The token is checked before the body is read; every
call is audited."""

from __future__ import annotations

from fastapi import FastAPI, Request
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool

from kennel.db import Database
from kennel.db.audit import record
from kennel.db.predictions import PredictionStore
from kennel.serve import schemas
from kennel.serve.auth import Identity
from kennel.serve.holder import Swap
from kennel.serve.routes.common import identity, limited, read_limited
from kennel.serve.routes.errors import ERRORS
from kennel.serve.service import ApiError, service_of

FEEDBACK_BYTES = 64 * 1024  # a prediction id and a label
FEEDBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": schemas.FeedbackIn.model_json_schema()}},
    }
}


def _save_feedback(db: Database, body: schemas.FeedbackIn, who: Identity) -> bool:
    """The label and its audit record, in one transaction (blocking: run it off the loop),
    then whether its prediction is in the log yet."""
    store = PredictionStore(db)
    store.add_feedback(body.prediction_id, body.label, actor=who.name, token=who.token_id)
    return store.get(body.prediction_id) is not None


async def feedback(
    request: Request,
    who: Identity = identity("feedback"),  # noqa: B008 - FastAPI dependency
) -> schemas.FeedbackOut:
    service = service_of(request)
    # the token is checked (the dependency) before a byte of the body is read, and the
    # body is small by nature: it is cut off at FEEDBACK_BYTES, whatever it claims
    raw = await read_limited(limited(request, FEEDBACK_BYTES))
    try:
        body = schemas.FeedbackIn.model_validate_json(raw)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise ApiError(422, "invalid_request", f"{where}: {first['msg']}") from exc
    labels = service.predictor().bundle.labels
    if body.label not in labels:
        raise ApiError(422, "invalid_label", f"label must be one of {labels}")
    logged = await run_in_threadpool(_save_feedback, service.db, body, who)
    return schemas.FeedbackOut(
        prediction_id=body.prediction_id, label=body.label, recorded=True, logged=logged
    )


async def reload(
    request: Request,
    who: Identity = identity("reload"),  # noqa: B008 - FastAPI dependency
) -> schemas.ReloadOut:
    service = service_of(request)

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
                    subject=service.environment,
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


def install(app: FastAPI) -> None:
    """Serve POST /v1/feedback and /v1/admin/reload."""
    app.add_api_route(
        "/v1/feedback",
        feedback,
        methods=["POST"],
        response_model=schemas.FeedbackOut,
        responses=ERRORS,
        summary="Record the true label of a prediction (role: operator, qa or admin)",
        openapi_extra=FEEDBACK_BODY,
    )
    app.add_api_route(
        "/v1/admin/reload",
        reload,
        methods=["POST"],
        response_model=schemas.ReloadOut,
        responses={
            **ERRORS,
            409: {"model": schemas.ErrorOut, "description": "The alias's version cannot load"},
        },
        summary="Check the alias now and swap models if it moved (role: operator, admin)",
    )
