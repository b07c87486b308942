"""Which ``Host`` names and ``Origin`` values the dashboard answers to.

On loopback it answers only to loopback names (``127.0.0.1``, ``localhost``, ``[::1]``): a page
elsewhere that rebinds its own name to a loopback address (DNS rebinding) gets a 400. Behind a
TLS proxy with a public name, ``kennel ui --public-origin https://kennel.example.com`` adds that
name to the allowed hosts and accepts that exact origin on forms (sign-in and actions), whether
the proxy passes the public ``Host`` on or rewrites it. Such a proxy says the request came over
https with ``X-Forwarded-Proto`` (``ProxiedScheme``); its ``X-Forwarded-For`` is not believed,
so a client's address is always the connection's peer."""

from __future__ import annotations

import html
import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse

from kennel.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
_ORIGIN = re.compile(
    r"^(?P<scheme>https?)://(?P<host>[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?|\[[0-9a-f:]+\])"
    r"(:(?P<port>[0-9]{1,5}))?$"
)


def public_origins(values: Iterable[str]) -> tuple[str, ...]:
    """``scheme://host[:port]`` values (repeated or comma-separated), lower-cased; anything
    else (a path, a query, credentials, another scheme) is a ConfigError naming it."""
    found: list[str] = []
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            origin = part.lower().rstrip("/")
            match = _ORIGIN.match(origin)
            if match is None or (match["port"] and not 0 < int(match["port"]) < 65536):
                raise ConfigError(
                    f"--public-origin {part!r} is not an origin like https://kennel.example.com "
                    "(scheme, host and optional port; no path)"
                )
            if origin not in found:
                found.append(origin)
    return tuple(found)


def host_of(origin: str) -> str:
    """The host part of an origin, as Starlette's Host parsing names it (IPv6 in brackets)."""
    match = _ORIGIN.match(origin)
    if match is None:
        raise ConfigError(f"{origin!r} is not an origin")
    return match["host"]


def allowed_hosts(bind: str, origins: Iterable[str] = ()) -> list[str] | None:
    """The Host names to answer to when listening on ``bind``: loopback names (and the public
    origins' hosts) on loopback; None (any) elsewhere, where the bind address is reachable by
    other names anyway."""
    if not is_loopback(bind):
        return None
    own = [f"[{bind}]" if ":" in bind else bind] if bind not in LOOPBACK else []
    return ["127.0.0.1", "localhost", "[::1]", *own, *(host_of(o) for o in origins)]


def is_loopback(bind: str) -> bool:
    """``localhost`` or a loopback address (all of 127.0.0.0/8, not only 127.0.0.1)."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:
        return False


_PROXY_PEERS = frozenset({"127.0.0.1", "::1"})  # where a proxy on this machine connects from


class ProxiedScheme:
    """ASGI middleware: a request a local proxy (a loopback peer) marks ``X-Forwarded-Proto:
    https`` (or ``http``) has that scheme, so that its cookies are Secure and its forms'
    ``Origin`` is compared as https. What uvicorn's own proxy handling did, without its
    other half: uvicorn also took the client's address from ``X-Forwarded-For``, which any
    local client could set to a new value a try (and so slip the sign-in throttle); the
    server runs with that off (``kennel.serve.server.server_config``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        peer = (scope.get("client") or ("",))[0]
        if scope["type"] == "http" and peer in _PROXY_PEERS:
            for key, value in scope["headers"]:
                if key == b"x-forwarded-proto":
                    # the proxy nearest to this server appends the last value
                    proto = value.decode("latin-1").rsplit(",", 1)[-1].strip().lower()
                    if proto in ("http", "https"):
                        scope = {**scope, "scheme": proto}
                    break
        await self.app(scope, receive, send)


_HOST = re.compile(r"^(?P<name>\[[0-9a-f:.]+\]|[^:\[\]/@\s]+)(:[0-9]{1,5})?\Z")


def _host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port (IPv6 keeps its brackets); "" for a
    header that is no host."""
    found = _HOST.match(header.strip().lower())
    return found["name"] if found else ""


class KnownHosts:
    """ASGI middleware: a request whose ``Host`` is not one of ``hosts`` gets a 400 saying
    which names are, as JSON (``/api/``, ``/health/``) or as a short page (Starlette's own
    guard answered plain text)."""

    def __init__(self, app: Any, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = tuple(dict.fromkeys(h.lower() for h in hosts))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if _host_name(header) not in self.hosts:
                detail = (
                    f"this dashboard answers to {', '.join(self.hosts)}, not to "
                    f"{header.strip()[:100]!r}; a proxy's public name is added with "
                    "kennel ui --public-origin"
                )
                path = scope.get("path", "")
                response = (
                    JSONResponse({"error": "unknown host", "detail": detail}, 400)
                    if path.startswith(("/api/", "/health/"))
                    else HTMLResponse(
                        f"<!doctype html><title>Unknown host</title><p>{html.escape(detail)}",
                        400,
                    )
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
