"""A size limit for the dashboard's request bodies, refused with the dashboard's own error page.

Plain ASGI, like ``kennel.serve.deadline``: the app's ``receive`` is wrapped so that a body
declared, or grown while it arrives, past ``max_bytes`` makes the route's read raise a 413
``ApiError``, which the dashboard answers with its HTML error page; nothing past the limit is
kept. (FastAPI's own ``max_body_size`` answers such a request in plain text, replacing
whatever page the app had rendered for it.)
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kennel.digits import declared_over
from kennel.serve.service import ApiError


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        too_long = declared_over(declared, self.max_bytes)  # refused unread
        received = 0

        async def limited() -> Message:
            nonlocal received
            if too_long:
                raise self.too_large()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self.too_large()
            return message

        await self.app(scope, limited, send)

    def too_large(self) -> ApiError:
        detail = f"the request body is larger than {self.max_bytes} bytes: this form takes less"
        # the rest of the body is never read: BodyDeadline's answer closes the connection
        return ApiError(413, "too_large", detail)
