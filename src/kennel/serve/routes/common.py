"""What several routes share: the bearer-token check and request bodies bounded as they arrive."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from starlette.types import Message

from kennel.digits import declared_over
from kennel.display import printable
from kennel.serve.auth import Identity
from kennel.serve.service import ApiError, service_of


def identity(action: str) -> Any:
    """A dependency: the caller's Identity, from a bearer token whose role may ``action``.
    It runs before the route reads a byte of the body."""

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
        who = service_of(request).tokens.identify(token.strip())
        if who is None:
            raise ApiError(
                401, "unauthorized", "unknown or revoked token", {"WWW-Authenticate": "Bearer"}
            )
        if not who.may(action):
            raise ApiError(403, "forbidden", f"role {who.role!r} may not {action}")
        return who

    return Depends(check)


def source_of(request: Request) -> str:
    return source_name(request.headers.get("x-kennel-source"))


def source_name(header: str | None) -> str:
    """The prediction log's source from a client's ``X-Kennel-Source``: its control
    characters escaped (C1 ones come through a header's latin-1), at most 256 characters."""
    return printable(header or "api")[:256]


async def read_limited(request: Request) -> bytes:
    return b"".join([chunk async for chunk in request.stream()])


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"upload exceeds {limit} bytes")


def limited(request: Request, limit: int) -> Request:
    """The request with a body that stops at ``limit`` bytes: the 413 is raised as the bytes
    arrive, so chunked and multipart bodies are bounded like any other and nothing over the
    limit is buffered, spooled to disk or kept."""
    declared = request.headers.get("content-length")
    if declared_over(declared, limit):
        raise too_large(limit)
    receive, seen = request.receive, 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large(limit)
        return message

    return Request(request.scope, bounded)


async def form(request: Request, limit: int) -> Any:
    try:
        return await request.form(max_files=64, max_fields=64, max_part_size=limit)
    except ApiError:
        raise
    except Exception as exc:
        raise ApiError(400, "bad_multipart", f"cannot parse multipart body: {exc}") from exc
