"""The answers uvicorn gives by itself, as kennel's JSON errors: a connection past
``serve.max_connections`` (503 with ``Retry-After``, as every other 503 of the service and
dashboard carries) and a request that is no HTTP (400, ``protocol``).

uvicorn answers such a connection itself, before any app or middleware sees it, with a fixed
plain-text 503 (``uvicorn.protocols.http.flow_control.service_unavailable``), which each of its
HTTP protocol modules imports by name. ``install`` points those names at ``answer`` instead;
``tests/serve/test_slow_clients.py`` holds the server at its limit and checks the answer, so a
uvicorn that stops taking the name is caught there."""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

BODY = json.dumps(
    {
        "error": "overloaded",
        "detail": "the server is at its connection limit (serve.max_connections); retry shortly",
    }
).encode()
RETRY_AFTER_S = 1
# the modules uvicorn's "auto" choice takes (httptools when installed, else h11)
_PROTOCOLS = ("uvicorn.protocols.http.h11_impl", "uvicorn.protocols.http.httptools_impl")


async def answer(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
                (b"retry-after", str(RETRY_AFTER_S).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY, "more_body": False})


def install() -> None:
    """Make uvicorn's protocol modules (those loaded, and those its "auto" choice loads)
    answer an over-limit connection with ``answer``."""
    from uvicorn.protocols.http import flow_control

    for name in _PROTOCOLS:
        try:
            importlib.import_module(name)
        except ImportError:  # httptools is optional
            continue
    plain = flow_control.service_unavailable  # left as it is there: the name's origin
    for name, module in list(sys.modules.items()):
        if (
            name.startswith("uvicorn.protocols.http.")
            and module is not flow_control
            and getattr(module, "service_unavailable", None) is plain
        ):
            module.service_unavailable = answer  # type: ignore[attr-defined]


BAD_REQUEST = json.dumps(
    {"error": "bad_request", "detail": "malformed HTTP request: it could not be parsed"}
).encode()


def _send_400(self: Any, msg: str) -> None:  # as uvicorn's own, with a JSON body
    self.transport.write(
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
        + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(BAD_REQUEST)
        + BAD_REQUEST
    )
    self.transport.close()


def protocol() -> type:
    """The HTTP protocol uvicorn's "auto" picks (httptools when installed, else h11), answering
    a request it cannot parse with kennel's JSON 400 instead of plain text."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return type("KennelHTTPProtocol", (AutoHTTPProtocol,), {"send_400_response": _send_400})
