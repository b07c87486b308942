"""A deadline for request bodies. uvicorn (h11 or httptools) waits for a body as long as the
client likes, so a client that sends its headers and then trickles the body, or stops, would
hold a connection, and a place under ``serve.max_connections``, for ever.

Plain ASGI, like the request metrics (``kennel.serve.app``): the app's ``receive`` is wrapped
so that the whole body must arrive within ``seconds`` of the request's start; past that the
route's read raises a 408 ``ApiError`` whose answer closes the connection.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kennel.serve.service import ApiError


class BodyDeadline:
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.seconds
        headers = dict(scope.get("headers") or [])
        has_body = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
        # complete: the body has arrived, so later receives (a disconnect) are not timed
        complete = not has_body

        async def timed() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise ApiError(
                    408,
                    "body_timeout",
                    f"the request body did not arrive within {self.seconds:g}s",
                    {"Connection": "close"},
                ) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def closing(message: Message) -> None:
            # an answer given before the body has all arrived (404, 401, 413, a route that
            # never reads it) closes the connection: otherwise the server would go on
            # waiting for the rest of the body, as long as the client trickles it
            if message["type"] == "http.response.start" and not complete:
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"connection" for name, _ in headers):  # once
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, timed, closing)
