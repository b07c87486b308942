"""The answer to a connection past ``serve.max_connections``: kennel's JSON error with
``Retry-After``, as every other 503 of the service and dashboard carries.

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
