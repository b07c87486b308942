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
        complete = False  # the body has arrived: later receives (a disconnect) are not timed

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

        await self.app(scope, timed, send)
