"""Which ``Host`` names a server on loopback answers to (the dashboard, the prediction
service, a feed's consuming app).

On loopback a server answers only to loopback names (``127.0.0.1``, ``localhost``, ``[::1]``,
its own address): a web page elsewhere that rebinds its own name to a loopback address (DNS
rebinding) would otherwise read the server's answers as its own origin's; it gets a 400. A
server bound to another address is reachable by other names anyway and checks none. A local
proxy that passes its public name on adds that name (``serve.hosts``, ``kennel ui
--public-origin``)."""

from __future__ import annotations

import html
import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse

LOOPBACK = ("127.0.0.1", "localhost", "::1")
HINT = "a local proxy's public name is added with serve.hosts in kennel.yaml"


def loopback_hosts(bind: str, extra: Iterable[str] = ()) -> list[str] | None:
    """The Host names to answer to when listening on ``bind``: loopback names (and ``extra``)
    on loopback; None (any) elsewhere."""
    if not is_loopback(bind):
        return None
    own = [f"[{bind}]" if ":" in bind else bind] if bind not in LOOPBACK else []
    return ["127.0.0.1", "localhost", "[::1]", *own, *(h.lower() for h in extra)]


def is_loopback(bind: str) -> bool:
    """Whether ``bind`` names only loopback addresses (all of 127.0.0.0/8 and ::1), however
    it is written: ``localhost``, ``127.1``, ``0x7f.1``, ``::ffff:127.0.0.1``, or a name
    that resolves to nothing else (as the server's own bind resolves it)."""
    if bind == "localhost":
        return True
    try:
        found = socket.getaddrinfo(bind.strip("[]"), None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError):
        return False
    addresses = {str(info[4][0]) for info in found}
    return bool(addresses) and all(_loopback_address(a) for a in addresses)


def _loopback_address(text: str) -> bool:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


_HOST = re.compile(r"^(?P<name>\[[0-9a-f:.]+\]|[^:\[\]/@\s]+)(:[0-9]{1,5})?\Z")


def _host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port (IPv6 keeps its brackets); "" for a
    header that is no host."""
    found = _HOST.match(header.strip().lower())
    return found["name"] if found else ""


class KnownHosts:
    """ASGI middleware: a request whose ``Host`` is not one of ``hosts`` gets a 400 saying
    which names are, as JSON (``/api/``, ``/health/``, or every path without ``pages``) or as
    a short page (Starlette's own guard answered plain text). ``what`` names the server and
    ``hint`` how to add a name."""

    def __init__(
        self,
        app: Any,
        hosts: Iterable[str],
        *,
        what: str = "this dashboard",
        hint: str = "a proxy's public name is added with kennel ui --public-origin",
        pages: bool = True,
    ) -> None:
        self.app = app
        self.hosts = tuple(dict.fromkeys(h.lower() for h in hosts))
        self.what, self.hint, self.pages = what, hint, pages

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            named = [value for key, value in scope["headers"] if key == b"host"]
            header = named[0].decode("latin-1") if len(named) == 1 else ""  # two: neither
            if _host_name(header) not in self.hosts:
                detail = (
                    f"{self.what} answers to {', '.join(self.hosts)}, not to "
                    f"{header.strip()[:100]!r}; {self.hint}"
                )
                path = scope.get("path", "")
                response = (
                    JSONResponse({"error": "unknown host", "detail": detail}, 400)
                    if not self.pages or path.startswith(("/api/", "/health/"))
                    else HTMLResponse(
                        f"<!doctype html><title>Unknown host</title><p>{html.escape(detail)}",
                        400,
                    )
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
