"""Which ``Host`` names and ``Origin`` values the dashboard answers to.

On loopback it answers only to loopback names (``127.0.0.1``, ``localhost``, ``[::1]``): a page
elsewhere that rebinds its own name to a loopback address (DNS rebinding) gets a 400. Behind a
TLS proxy with a public name, ``kennel ui --public-origin https://kennel.example.com`` adds that
name to the allowed hosts and accepts that exact origin on forms (sign-in and actions), whether
the proxy passes the public ``Host`` on or rewrites it. Such a proxy says the request came over
https with ``X-Forwarded-Proto`` (``ProxiedScheme``); its ``X-Forwarded-For`` is not believed,
so a client's address is always the connection's peer."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from kennel.errors import ConfigError
from kennel.serve.hosts import KnownHosts, is_loopback, loopback_hosts

__all__ = ["KnownHosts", "ProxiedScheme", "allowed_hosts", "is_loopback", "public_origins"]

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


def allowed_hosts(bind: str, origins: Iterable[str] = ()) -> list[str] | None:
    """The Host names the dashboard answers to when listening on ``bind``: loopback names and
    the public origins' hosts on loopback; None (any) elsewhere."""
    return loopback_hosts(bind, [host_of(o) for o in origins])


def host_of(origin: str) -> str:
    """The host part of an origin, as Starlette's Host parsing names it (IPv6 in brackets)."""
    match = _ORIGIN.match(origin)
    if match is None:
        raise ConfigError(f"{origin!r} is not an origin")
    return match["host"]


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
