"""Error answers: ``{"error": code, "detail": text}`` for every failure, with the status from
``kennel.errors.STATUS`` for kennel errors; bad input is always a 4xx."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kennel.errors import KennelError, status_of
from kennel.serve import schemas
from kennel.serve.service import ApiError

# the error answers every API route documents
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorOut, "description": text}
    for code, text in {
        400: "Bad request",
        401: "Missing or invalid token",
        403: "Token lacks the role",
        408: "Request body too slow (serve.body_timeout_s)",
        413: "Upload too large",
        415: "Unsupported media type",
        422: "Not an acceptable image or body",
        503: "Not ready or overloaded",
        504: "Timed out",
    }.items()
}


def error_response(exc: KennelError) -> JSONResponse:
    """A kennel error as JSON with the status from ``kennel.errors.STATUS``; only a 503 (try
    again later) carries Retry-After."""
    status = status_of(exc).http_status
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": exc.code, "detail": " ".join(str(exc).split())}, status, headers)


async def _api_error(_r: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"error": exc.code, "detail": exc.detail}, exc.status, exc.headers)


async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return JSONResponse({"error": "invalid_request", "detail": f"{where}: {first['msg']}"}, 422)


async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(
        {"error": "http_error", "detail": str(exc.detail)},
        exc.status_code,
        getattr(exc, "headers", None),
    )


async def _kennel(_r: Request, exc: KennelError) -> JSONResponse:
    return error_response(exc)


def install(app: FastAPI) -> None:
    """Answer every error the app can raise as ``{"error", "detail"}`` JSON."""
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(StarletteHTTPException)(_http)
    app.exception_handler(KennelError)(_kennel)
